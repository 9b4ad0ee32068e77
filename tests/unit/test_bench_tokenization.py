"""bench/tokenization.py runs its methods on the same tokens and its RSS check runs the real stage.

Only outcomes are asserted (which rows, which token counts, files written); never timings.
"""

from __future__ import annotations

import pandas as pd
import pytest

from bench import tokenization
from components.shared import artifacts

BLOCK = 32  # tests/conftest.py CLEAN["block_size"]


def test_every_method_sees_the_same_text_tokens(cleaned_dir):
    texts = pd.read_parquet(cleaned_dir / artifacts.CORPUS)["text"].tolist()
    rows = tokenization.run(lambda: iter(texts), cleaned_dir / artifacts.TOKENIZER_DIR, BLOCK, repeats=1)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"encode_batch, ids discarded", tokenization.CEILING, tokenization.RECIPE, tokenization.LMFORGE}
    report = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)["tokens"]
    assert {r["tokens"] for r in rows} == {report["corpus_tokens"] + report["heldout_tokens"]}
    assert by_name[tokenization.RECIPE]["vs_recipe"] == 1.0 and by_name[tokenization.CEILING]["vs_ceiling"] == 1.0
    assert all(r["seconds"] > 0 and r["tokens_per_s"] > 0 and r["cpu_seconds"] >= 0 for r in rows)
    table = tokenization.markdown(rows)
    assert table.count("\n") == len(rows) + 1 and tokenization.LMFORGE in table


def test_recipe_and_lmforge_cut_the_same_number_of_blocks(cleaned_dir):
    """run_mlm's group_texts frames each document with [CLS]/[SEP]; LMForge one [CLS] per block:
    the block counts differ by the framing only, not by lost or duplicated text."""
    from transformers import AutoTokenizer

    texts = pd.read_parquet(cleaned_dir / artifacts.CORPUS)["text"].tolist()
    tok = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    text_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    recipe_blocks = tokenization._run_mlm(tok, texts, BLOCK)
    assert recipe_blocks == (text_tokens + 2 * len(texts)) // BLOCK
    backend = tok.backend_tokenizer
    backend.no_truncation()
    assert tokenization._lmforge(backend, texts, BLOCK, 1000) == (text_tokens + len(texts)) // (BLOCK - 1)


@pytest.mark.skipif(not tokenization.DEMO_CORPUS.is_file(), reason="demo data not built (make data)")
def test_rss_check_runs_the_stage_on_a_repeated_corpus(tmp_path):
    result = tokenization.rss_check(0.004, config={"vocab_size": 500, "block_size": 64}, workdir=tmp_path)  # two copies of the demo corpus
    assert result["docs"] == 2 * 106 and result["corpus_bytes"] >= 4e6
    assert result["peak_rss_bytes"] > 50 * 2**20 and result["tokens"] > 500_000
    assert result["shard_bytes"] > result["n_blocks_train"] * 64 * 4  # int32 tokens, plus .npy headers and index.json
    phases = [p.split()[1].rstrip(":") for p in result["phases"]]
    # clean_tokenize also reports decontamination and the labeled texts; the corpus's three phases stay in order
    assert [p for p in phases if p in ("cleaned", "trained", "packed")] == ["cleaned", "trained", "packed"]
    assert list(tmp_path.iterdir()) == []  # its temporary corpus and outputs are gone
