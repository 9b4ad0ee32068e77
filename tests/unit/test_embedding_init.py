"""pretrain.embedding_init ppmi: count-based token vectors before the masked LM trains."""

from __future__ import annotations

import numpy as np
import pytest

from components.pretrain.embedding_init import ppmi_svd
from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts
from components.shared.errors import UserError

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
PARAMS = {"model": TINY, "max_steps": 2, "batch_size": 4, "seed": 3, "log_every": 1, "threads": 1, "checkpoint_every": 0}


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_tokens_that_share_contexts_get_close_vectors():
    # Two "topics": tokens 10-19 only ever appear among themselves, 20-29 likewise; 0 is special.
    rng = np.random.default_rng(0)
    blocks = np.concatenate([np.concatenate([[0], rng.integers(lo, lo + 10, size=31)]) for lo in (10, 20) * 200]).reshape(400, 32)
    vectors = ppmi_svd(blocks, vocab_size=40, dim=8, window=3, special_ids=[0])
    assert vectors.shape == (40, 8) and vectors.dtype == np.float32
    assert not vectors[0].any() and not vectors[30:].any()  # the special token and unseen ids: no vector
    same = np.mean([cosine(vectors[i], vectors[j]) for i in range(10, 20) for j in range(10, 20) if i != j])
    across = np.mean([cosine(vectors[i], vectors[j]) for i in range(10, 20) for j in range(20, 30)])
    assert same > 0.8 and across < 0.2


def test_the_probe_variants_change_what_they_name():
    # bench/recipe_probes.py's knobs: the eigenvalue power scales column k by s_k**power, and the
    # weighting only matters past distance 1.
    rng = np.random.default_rng(1)
    blocks = rng.integers(1, 30, size=(200, 24))
    v0, v05, v1 = (ppmi_svd(blocks, 30, 6, window=3, special_ids=[0], eig_power=p) for p in (0.0, 0.5, 1.0))
    assert np.array_equal(v05, ppmi_svd(blocks, 30, 6, window=3, special_ids=[0]))  # the default is the demo's U * sqrt(S)
    seen = np.abs(v0).sum(1) > 0
    s = (v1[seen] / v0[seen]).mean(0)
    np.testing.assert_allclose(v1[seen], v0[seen] * s, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(v05[seen], v0[seen] * np.sqrt(s), rtol=1e-4, atol=1e-6)
    assert np.all(np.diff(s) <= 0) and s[-1] < s[0]  # singular values, largest first
    one = [ppmi_svd(blocks, 30, 6, window=1, special_ids=[0], weighting=w) for w in ("harmonic", "uniform")]
    three = [ppmi_svd(blocks, 30, 6, window=3, special_ids=[0], weighting=w) for w in ("harmonic", "uniform")]
    assert np.array_equal(*one) and not np.allclose(*three)
    assert not np.allclose(v05, ppmi_svd(blocks, 30, 6, window=3, special_ids=[0], smoothing=1.0))


def test_pretrain_starts_from_the_corpus_vectors(cleaned_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from components.shared.shards import open_blocks

    runs = {}
    for init in ("random", "ppmi"):
        out = tmp_path / init
        metrics = pretrain(cleaned_dir, out, PretrainConfig.from_params({**PARAMS, "embedding_init": init}, "pretrain"), checkpoint_dir=tmp_path / f"c-{init}")
        runs[init] = (metrics, AutoModelForMaskedLM.from_pretrained(out).get_input_embeddings().weight.detach().numpy())
    (plain_metrics, plain), (ppmi_metrics, table) = runs["random"], runs["ppmi"]
    assert "pretrain/embedding_init_s" not in plain_metrics and ppmi_metrics["pretrain/embedding_init_tokens"] > 100

    tok = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    vectors = ppmi_svd(open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN), len(tok), TINY["hidden_size"], special_ids=tok.all_special_ids)
    seen = np.abs(vectors).sum(1) > 0
    # Two small steps later, the seen rows are still the PPMI-SVD vectors, scaled to 6 x 0.02 RMS ...
    expected = vectors[seen] * (6 * 0.02 / np.sqrt((vectors[seen] ** 2).mean()))
    assert np.sqrt((table[seen] ** 2).mean()) == pytest.approx(0.12, rel=0.05)
    assert np.corrcoef(table[seen].ravel(), expected.ravel())[0, 1] > 0.95
    # ... and the special tokens kept BERT's random init, as all rows of the random run did.
    special = tok.all_special_ids
    assert np.sqrt((table[special] ** 2).mean()) == pytest.approx(0.02, rel=0.5)
    assert np.sqrt((plain**2).mean()) == pytest.approx(0.02, rel=0.1)


def test_embedding_init_is_a_checked_choice():
    with pytest.raises(UserError, match=r"pretrain\.embedding_init.*'random' or 'ppmi'"):
        PretrainConfig.from_params({**PARAMS, "embedding_init": "word2vec"}, "pretrain")
