"""pretrain.nsp: BERT's next-sentence prediction beside masked LM, on the session's packed blocks;
and plain masked LM exactly as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
from model_weights import max_diff, weights
from resume import stopped_after_first_checkpoint

from components.objectives import masked_lm, next_sentence
from components.pretrain import checkpoint
from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts
from components.shared.errors import UserError
from components.shared.shards import open_blocks

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
PARAMS = {"nsp": True, "model": TINY, "batch_size": 16, "learning_rate": 2e-3, "seed": 7, "log_every": 100, "threads": 1, "checkpoint_every": 0}


def config(**overrides) -> PretrainConfig:
    return PretrainConfig.from_params({**PARAMS, **overrides}, "pretrain")


def tokenizer(cleaned_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)


@pytest.fixture(scope="module")
def pairs(cleaned_dir):
    return next_sentence.SegmentPairs(open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN), tokenizer(cleaned_dir), seed=3)


def test_pairs_are_cls_a_sep_b_sep_with_next_segments_really_consecutive(pairs, cleaned_dir):
    tok = tokenizer(cleaned_dir)
    blocks = open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN)
    stream = blocks.take(np.arange(len(blocks)))[:, 1:].ravel()  # the documents back to back, [SEP] after each
    doc_of = np.concatenate([[0], np.cumsum(stream == tok.sep_token_id)[:-1]])  # document index of each position
    rows = pairs.take(np.arange(len(pairs)))
    assert rows.shape == (len(pairs), blocks.block_size + 1) and len(pairs) > 100
    labels = rows[:, -1]
    assert set(labels) == {0, 1} and (labels == 0).sum() == (labels == 1).sum()  # every A once next, once random
    order = np.random.default_rng(0).permutation(len(pairs))[:160]  # ten batches of 16 as the engine draws them
    assert 0.35 < labels[order].mean() < 0.65
    for i in range(len(pairs)):
        ids = rows[i, :-1]
        seps = np.flatnonzero(ids == tok.sep_token_id)
        assert ids[0] == tok.cls_token_id and len(seps) == 2 and (ids[seps[1] + 1 :] == tok.pad_token_id).all()
        a, b = ids[1 : seps[0]], ids[seps[0] + 1 : seps[1]]
        assert 0 < len(a) <= pairs.max_segment and 0 < len(b) <= pairs.max_segment
        sa, sb = pairs.pair(i)[:2]
        assert np.array_equal(stream[pairs.start[sa] : pairs.start[sa] + len(a)], a)
        assert np.array_equal(stream[pairs.start[sb] : pairs.start[sb] + len(b)], b)
        if labels[i] == 0:  # B starts where A ends, in the same document
            assert pairs.start[sb] == pairs.start[sa] + len(a) and doc_of[pairs.start[sa]] == doc_of[pairs.start[sb] + len(b) - 1]
        else:
            assert doc_of[pairs.start[sa]] != doc_of[pairs.start[sb]]
    # Segments end at sentence ends where the window allows: most full-window cuts do.
    period = tok.convert_tokens_to_ids(".")
    ends = stream[pairs.start + pairs.length - 1]
    assert (ends == period).mean() > 0.3


def test_token_types_are_0_for_cls_a_sep_and_1_for_b_sep():
    import torch

    ids = torch.tensor([[2, 7, 8, 3, 9, 9, 9, 3, 0, 0]])
    assert next_sentence.token_types(ids, sep=3).tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 0, 0]]


def test_the_step_loss_is_bert_for_pretraining_s_loss(cleaned_dir, pairs):
    """The engine's sparse head gives transformers' loss (masked-LM mean + NSP mean) on the same batch."""
    import torch

    tok = tokenizer(cleaned_dir)
    model = next_sentence.build_model(_sizes(), tok).eval()
    inputs, labels, n = next_sentence.Batches(tok, config())(torch.from_numpy(pairs.take(np.arange(16))).long())
    with torch.no_grad():
        ours = next_sentence.step_module(model)(*next_sentence.micro_batch(inputs, labels, None)) / n
        theirs = model(input_ids=inputs[0], token_type_ids=inputs[1], attention_mask=inputs[2], labels=labels[0], next_sentence_label=labels[1]).loss
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def _sizes():
    from components.shared.modeling import ModelSizes

    return ModelSizes.model_validate({**TINY, "dropout": 0.0})


def test_loss_falls_heldout_is_masked_lm_s_and_the_encoder_fine_tunes_with_a_trained_pooler(cleaned_dir, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    out = tmp_path / "nsp"
    metrics = pretrain(cleaned_dir, out, config(max_steps=30), checkpoint_dir=tmp_path / "ckpt")
    losses = [h["loss"] for h in artifacts.read_json(out / artifacts.HISTORY)]
    vocab = len(tokenizer(cleaned_dir))
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert abs(losses[0] - (math.log(vocab) + math.log(2))) < 1.0  # a fresh model: uniform over the vocabulary, and a coin
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    assert metrics["pretrain/heldout_perplexity"] == pytest.approx(math.exp(metrics["pretrain/heldout_loss"])) and metrics["pretrain/mfu"] > 0

    saved = weights(out)
    assert "cls.seq_relationship.weight" in saved and "bert.pooler.dense.weight" in saved
    mlm = AutoModelForMaskedLM.from_pretrained(out)  # evaluate's perplexity loads it as before
    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)  # finetune's load: the NSP head is dropped
    assert torch.equal(classifier.bert.pooler.dense.weight, saved["bert.pooler.dense.weight"])  # the pooler NSP trained
    assert torch.equal(mlm.bert.embeddings.word_embeddings.weight, saved["bert.embeddings.word_embeddings.weight"])


def test_an_interrupted_nsp_run_resumes_to_identical_weights(cleaned_dir, tmp_path, monkeypatch):
    import torch

    pretrain(cleaned_dir, tmp_path / "straight", config(max_steps=12), checkpoint_dir=tmp_path / "ckpt-a")
    stopped_after_first_checkpoint(monkeypatch, lambda: pretrain(cleaned_dir, tmp_path / "resumed", config(max_steps=12, checkpoint_every=5), checkpoint_dir=tmp_path / "ckpt-b"))
    assert checkpoint.step_of(checkpoint.latest(tmp_path / "ckpt-b")) == 5
    pretrain(cleaned_dir, tmp_path / "resumed", config(max_steps=12, checkpoint_every=5), checkpoint_dir=tmp_path / "ckpt-b")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = [artifacts.read_json(tmp_path / n / artifacts.HISTORY) for n in ("straight", "resumed")]
    assert history[0] == history[1]


def test_two_gloo_processes_and_accumulation_give_the_one_batch_gradient(cleaned_dir, tmp_path):
    """Each pair's NSP weight keeps the loss the two means whatever the split of the batch."""
    runs = {"one": {}, "two": {"nproc": 2}, "accum": {"grad_accum": 4}}
    for name, extra in runs.items():
        pretrain(cleaned_dir, tmp_path / name, config(max_steps=4, model={**TINY, "dropout": 0.0}, **extra), checkpoint_dir=tmp_path / f"ck-{name}")
    one = weights(tmp_path / "one")
    assert max_diff(one, weights(tmp_path / "two")) < 1e-4 and max_diff(one, weights(tmp_path / "accum")) < 1e-5
    losses = [[h["loss"] for h in artifacts.read_json(tmp_path / n / artifacts.HISTORY)] for n in runs]
    assert max(abs(x - y) for x, y in zip(losses[0], losses[1])) < 1e-4


def test_bf16_autocast_trains_with_nsp(cleaned_dir, tmp_path):
    metrics = pretrain(cleaned_dir, tmp_path / "bf16", config(max_steps=3, precision="bf16"), checkpoint_dir=tmp_path / "ck")
    assert math.isfinite(metrics["pretrain/final_loss"]) and math.isfinite(metrics["pretrain/heldout_loss"])


# 5 steps of plain masked LM (seed 7, batch 8, 1 thread) on the session's blocks, recorded at commit
# 152981d, before NSP existed: float.hex of each step's loss. The engine's plain path must not move a bit.
PLAIN_MLM_LOSSES = ["0x1.8f6a7e1e1e1e2p+2", "0x1.8b0dfdddddddep+2", "0x1.8e5541af286bdp+2", "0x1.8b79e0dd67c8ap+2", "0x1.89e2b73737373p+2"]


def test_plain_masked_lm_is_bit_identical_to_before_nsp(cleaned_dir, tmp_path):
    from transformers import AutoConfig

    plain = PretrainConfig.from_params({"model": TINY, "max_steps": 5, "batch_size": 8, "seed": 7, "log_every": 100, "threads": 1, "checkpoint_every": 0}, "pretrain")
    assert plain.nsp is False
    pretrain(cleaned_dir, tmp_path / "mlm", plain, checkpoint_dir=tmp_path / "ck")
    losses = [h["loss"] for h in artifacts.read_json(tmp_path / "mlm" / artifacts.HISTORY)]
    assert [float.hex(x) for x in losses] == PLAIN_MLM_LOSSES
    assert AutoConfig.from_pretrained(tmp_path / "mlm").architectures == ["BertForMaskedLM"]
    assert "cls.seq_relationship.weight" not in weights(tmp_path / "mlm")


def test_the_nsp_module_offers_every_piece_the_masked_lm_objective_does():
    pieces = [
        n
        for n in dir(masked_lm)
        if n.isupper() or n in ("Batches", "build_model", "load_model", "training_blocks", "step_module", "micro_batch", "fixed_shapes", "heldout_loss", "heldout_perplexity", "train_flops")
    ]
    assert len(pieces) == 14 and all(hasattr(next_sentence, p) for p in pieces), [p for p in pieces if not hasattr(next_sentence, p)]
    from components import objectives

    assert objectives.for_pretrain(config()) is next_sentence and objectives.for_pretrain(config(nsp=False)) is masked_lm


def test_nsp_is_a_masked_lm_option_only():
    with pytest.raises(UserError, match="nsp is a second loss of the masked_lm objective, not of causal_lm") as info:
        PretrainConfig.from_params({"objective": "causal_lm", "nsp": True}, "pretrain")
    assert "\n" not in str(info.value)


def test_nsp_continues_a_masked_lm_checkpoint_with_a_fresh_nsp_head(cleaned_dir, mlm_dir, tmp_path):
    import torch

    pretrain(cleaned_dir, tmp_path / "continued", config(max_steps=2, init_from=str(mlm_dir)), checkpoint_dir=tmp_path / "ck")
    before, after = weights(mlm_dir), weights(tmp_path / "continued")
    assert "cls.seq_relationship.weight" in after and "cls.seq_relationship.weight" not in before
    assert before["bert.embeddings.word_embeddings.weight"].shape == after["bert.embeddings.word_embeddings.weight"].shape
    assert not torch.equal(before["bert.embeddings.word_embeddings.weight"], after["bert.embeddings.word_embeddings.weight"])  # it trained on
