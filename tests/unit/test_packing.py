"""What packing puts around a document comes from the objective (`PACKING`, clean_tokenize.objective):
masked LM's blocks are byte for byte what they were before the objectives had a say; causal LM's
hold the documents back to back with [SEP] between them, no [CLS], no padding."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from tiny_data import CLEAN

from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize, corpus_backend, heldout_rows
from components.clean_tokenize.sharded import merge_shards, prepare_stage, tokenize_shard
from components.shared import artifacts
from components.shared.errors import UserError
from components.shared.shards import open_blocks
from pipelines.config import load_config

# sha256 over the block shards and index.json of both splits (names and bytes, sorted), recorded at
# commit 152981d, before packing read the objective: the masked-LM blocks must not move by one byte.
MLM_BLOCKS_SHA256 = {
    "tiny": "8167d714a2253c0d60d54dff93c90b572f2a414dc476fa21ed001229e9a8ee14",
    "task_adaptive": "7cb4f2129f5772b2c8d53f612c14834382db0eb712598059ecac0f27e580a70c",
    "block 16, 7 per shard": "8344e3980d6bd7264dc797e8e887d45b117bc1057bf3e139ec56d4a522ed68b9",
}
VARIANTS = {"tiny": {}, "task_adaptive": {"task_adaptive": True}, "block 16, 7 per shard": {"block_size": 16, "shard_blocks": 7}}


def blocks_sha256(cleaned) -> str:
    h = hashlib.sha256()
    for split in (artifacts.BLOCKS_TRAIN, artifacts.BLOCKS_HELDOUT):
        for f in sorted((cleaned / split).iterdir()):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def all_blocks(path) -> np.ndarray:
    blocks = open_blocks(path)
    return blocks.take(np.arange(len(blocks)))


def tokenizer(cleaned):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cleaned / artifacts.TOKENIZER_DIR)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_masked_lm_blocks_are_the_bytes_they_were(raw_dir, cleaned_dir, tmp_path, variant):
    if variant == "tiny":
        out = cleaned_dir  # the session's chain, packed with the default objective
    else:
        out = tmp_path / "cleaned"
        clean_tokenize(raw_dir, out, CleanTokenizeConfig.from_params({**CLEAN, **VARIANTS[variant]}, "clean_tokenize"))
    assert blocks_sha256(out) == MLM_BLOCKS_SHA256[variant]
    assert artifacts.read_json(out / artifacts.CLEAN_REPORT)["packing"] == {"objective": "masked_lm", "block_prefix": "[CLS]", "doc_separator": "[SEP]"}


def test_causal_lm_blocks_hold_documents_separated_by_sep_and_nothing_else(clm_cleaned_dir, cleaned_dir):
    tok = tokenizer(clm_cleaned_dir)
    train = all_blocks(clm_cleaned_dir / artifacts.BLOCKS_TRAIN)
    assert train.shape[1] == CLEAN["block_size"] and len(train) > 0
    for name in (artifacts.BLOCKS_TRAIN, artifacts.BLOCKS_HELDOUT):
        blocks = all_blocks(clm_cleaned_dir / name)
        for special in (tok.cls_token_id, tok.mask_token_id, tok.pad_token_id):
            assert not (blocks == special).any()
    # The stream read back is every train document's own ids, in order, each followed by [SEP].
    backend = corpus_backend(clm_cleaned_dir)  # without the labeled set's truncation
    corpus = pd.read_parquet(clm_cleaned_dir / artifacts.CORPUS)
    report = artifacts.read_json(clm_cleaned_dir / artifacts.CLEAN_REPORT)
    stream = train.ravel()
    expected, held = [], set(np.flatnonzero(heldout_rows(clm_cleaned_dir / artifacts.CORPUS, CleanTokenizeConfig().heldout_pct)))
    for i, text in enumerate(corpus["text"]):
        if i not in held:
            expected += [*backend.encode(text, add_special_tokens=False).ids, tok.sep_token_id]
    assert stream.tolist() == expected[: len(stream)] and len(expected) - len(stream) < CLEAN["block_size"]
    assert 1 < (stream == tok.sep_token_id).sum() <= len(corpus)  # the separator between documents
    assert report["packing"] == {"objective": "causal_lm", "block_prefix": None, "doc_separator": "[SEP]"}
    # The same text packed for masked LM: one [CLS] more per block, so fewer tokens per block.
    assert report["tokens"]["corpus_tokens"] == artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)["tokens"]["corpus_tokens"]
    assert len(train) <= len(all_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN))


def test_sharded_causal_lm_packing_equals_one_task(raw_dir, clm_cleaned_dir, tmp_path):
    config = CleanTokenizeConfig.from_params({**CLEAN, "objective": "causal_lm"}, "clean_tokenize")
    prepare_stage(raw_dir, tmp_path / "prepared", config)
    parts = [tmp_path / f"shard{i}" for i in range(2)]
    for i, part in enumerate(parts):
        tokenize_shard(tmp_path / "prepared", part, i, 2)
    merge_shards(tmp_path / "prepared", parts, tmp_path / "merged", config)
    assert blocks_sha256(tmp_path / "merged") == blocks_sha256(clm_cleaned_dir)


def test_the_pipeline_packs_for_the_configured_objective():
    assert load_config("demo").clean_tokenize.objective == "masked_lm"
    assert load_config("demo-clm").clean_tokenize.objective == "causal_lm"
    assert load_config("demo", ["pretrain.objective=causal_lm"]).clean_tokenize.objective == "causal_lm"
    with pytest.raises(UserError, match="clean_tokenize.objective masked_lm differs from pretrain.objective causal_lm"):
        load_config("demo", ["pretrain.objective=causal_lm", "clean_tokenize.objective=masked_lm"])
    with pytest.raises(UserError, match="unknown objective 'gpt'"):
        load_config("demo", ["clean_tokenize.objective=gpt"])


def test_pretrain_refuses_blocks_packed_for_another_objective(clm_cleaned_dir, tmp_path):
    from components.pretrain.pretrain import PretrainConfig, pretrain

    config = PretrainConfig.from_params({"max_steps": 1, "batch_size": 2, "threads": 1, "model": {"hidden_size": 16, "num_heads": 2, "num_layers": 1, "intermediate_size": 32}}, "pretrain")
    with pytest.raises(UserError, match="packed for causal_lm but pretrain.objective is masked_lm: rerun clean_tokenize") as info:
        pretrain(clm_cleaned_dir, tmp_path / "out", config, checkpoint_dir=tmp_path / "ck")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()
