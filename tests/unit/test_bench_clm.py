"""bench/clm.py's causal-LM rows run end to end on the tiny chain: Trainer on the run_clm recipe and
the engine's causal_lm objective train on the same real tokens and are scored on the same held-out
blocks. Only outcomes are asserted (rows, token counts, finite losses, files written); never timings.
"""

from __future__ import annotations

import json
import math

import pandas as pd
from tiny_data import MODEL

from bench import clm, run
from components.clean_tokenize.clean_tokenize import heldout_rows
from components.shared import artifacts

BLOCK = 32  # tests/conftest.py CLEAN["block_size"]
STEPS = 8  # 5 warm-up steps, then a steady state of 3


def test_run_clm_dataset_is_group_texts_of_the_training_documents(clm_cleaned_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(clm_cleaned_dir / artifacts.TOKENIZER_DIR)
    corpus = pd.read_parquet(clm_cleaned_dir / artifacts.CORPUS)
    held = heldout_rows(clm_cleaned_dir / artifacts.CORPUS, 5)
    texts = clm.training_texts(clm_cleaned_dir, 5)
    assert texts == corpus["text"][~held].tolist() and 0 < len(texts) < len(corpus)  # held-out documents never train the recipe
    grouped = clm.run_clm_blocks(tok, texts, BLOCK)
    tokens = sum(len(tok(t)["input_ids"]) for t in texts)  # run_clm's tokenizer(texts): [CLS] ... [SEP] around each
    assert len(grouped) == tokens // BLOCK
    assert all(len(g["input_ids"]) == BLOCK and g["labels"] == g["input_ids"] and sum(g["attention_mask"]) == BLOCK for g in grouped)
    assert grouped[0]["input_ids"][0] == tok.cls_token_id


def test_clm_rows_train_on_equal_tokens_and_write_their_own_table(clm_cleaned_dir, tmp_path):
    rows = clm.training_rows(clm_cleaned_dir, "tiny", STEPS, 1e9, 1, MODEL, 2e-3, 5)
    assert [r["recipe"] for r in rows] == [clm.RECIPE, clm.NO_DROPOUT, clm.ENGINE]
    # Equal real tokens, no padding on either side; the tiny recipe's epoch (~5 batches) ends in a short
    # batch, as run_clm's Trainer does (the demo's 60 steps stay inside the first epoch).
    assert rows[2]["real_tokens"] == STEPS * 32 * BLOCK
    assert all(STEPS * 32 * BLOCK - 32 * BLOCK < r["real_tokens"] <= STEPS * 32 * BLOCK for r in rows[:2])
    assert all(r["padding_share"] == 0 and r["steps"] == STEPS for r in rows)
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(clm_cleaned_dir / artifacts.TOKENIZER_DIR))
    for r in rows:  # every recipe learned something: below the uniform guess's loss, with a real spread
        assert math.isfinite(r["heldout_clm_loss"]) and r["heldout_clm_loss"] < math.log(vocab)
        assert 0 < r["heldout_loss_stderr"] < 0.5 and r["mfu"] > 0 and r["real_tokens_per_s"] > 0
    assert rows[0]["x_trainer_run_clm"] == 1.0

    result = {"machine": run.machine(1), "quick": True, "rows": ["clm"], "tokenization": [], "training": [], "clm": rows, "matmul_peak_gflops": 1.0, "matmul_peak_gflops_end": 2.0, "seconds": 1.0}
    run.rescale_mfu(result)
    run.write(result, tmp_path, "clm-only")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clm-only.json", "clm-only.md", "clm-only.png"]
    table = (tmp_path / "clm-only.md").read_text()
    assert "held-out CLM loss" in table and "held-out MLM loss" not in table  # a CLM-only run shows no MLM table
    assert sum(line.startswith("| tiny |") for line in table.splitlines()) == 3
    assert json.loads((tmp_path / "clm-only.json").read_text())["clm"][2]["recipe"] == clm.ENGINE
