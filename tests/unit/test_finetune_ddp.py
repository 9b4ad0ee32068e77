"""DDP fine-tuning: two gloo processes on the CPU fine-tune the same classifier as one process.

Both compute the gradient of the same global batch (same shuffle on every rank; each rank takes
its slice), so they differ only in the order floats are summed. The train split is cut to
2 x batch_size + 1 rows, so each epoch ends on a one-row batch: rank 1's slice of it is empty
and it runs a row at weight zero. The cut is imbalanced (24:9) and the loss class-weighted
(balanced), so each rank's slice carries a different share of the global batch's weight: the
loss must be normalised by the global sum of weights, not per rank. Two rates are searched, so
the second run starts again from the first's initial weights inside the same DDP wrapper.
Dropout is off: its masks come from each process's own generator and would legitimately differ.
Measured on this machine (2 rates x 6 steps, 2 epochs, tiny model, fp32, class-weighted): max |w2 - w1| = 1.2e-7 (classifier), 1.2e-7 (control);
the logged losses and validation accuracies agree.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from model_weights import max_diff, weights

from components.finetune.finetune import CONTROL_DIR, SEARCH, FinetuneConfig, finetune
from components.shared import artifacts
from components.shared.errors import UserError

BATCH = 16
PARAMS = {"max_steps": 6, "eval_every": 3, "batch_size": BATCH, "learning_rates": [5e-3, 1e-2], "class_weights": "balanced", "log_every": 10, "threads": 1, "seed": 3}
TOLERANCE = 1e-4  # max abs difference of any weight (classifier and control) and of any logged loss


@pytest.fixture(scope="module")
def inputs(cleaned_dir, mlm_dir, tmp_path_factory):
    """A labeled set with 2 x BATCH + 1 train rows (24 positive, 9 negative), and the session's encoder without dropout."""
    root = tmp_path_factory.mktemp("ft-ddp")
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train, val = labeled[labeled.split == "train"], labeled[labeled.split == "validation"]
    train = pd.concat([train[train.label == 1].iloc[:24], train[train.label == 0].iloc[:9]]).sample(frac=1, random_state=0)
    assert len(train) == 2 * BATCH + 1
    (root / "cleaned").mkdir()
    pd.concat([train, val]).to_parquet(root / "cleaned" / artifacts.LABELED)
    shutil.copy(cleaned_dir / artifacts.CLEAN_REPORT, root / "cleaned")
    mlm = shutil.copytree(mlm_dir, root / "mlm")
    config = json.loads((mlm / "config.json").read_text())
    (mlm / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    return root / "cleaned", mlm


@pytest.fixture(scope="module")
def single(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft-ddp-one") / "classifier"
    metrics = finetune(*inputs, out, FinetuneConfig.from_params(PARAMS, "finetune"))
    return out, metrics


def test_two_gloo_processes_match_one(inputs, single, tmp_path):
    one, one_metrics = single
    two = tmp_path / "classifier"
    metrics = finetune(*inputs, two, FinetuneConfig.from_params({**PARAMS, "nproc": 2}, "finetune"))
    assert metrics["finetune/processes"] == 2 and one_metrics["finetune/processes"] == 1
    assert metrics["finetune/steps"] == one_metrics["finetune/steps"] == 6  # 3 steps an epoch, the third of one row
    diffs = {d: max_diff(weights(one / d), weights(two / d)) for d in (".", CONTROL_DIR)}
    print(f"max |w(2 procs) - w(1 proc)|: classifier {diffs['.']:.3g}, control {diffs[CONTROL_DIR]:.3g}")
    assert max(diffs.values()) < TOLERANCE
    h1, h2 = (artifacts.read_json(d / artifacts.HISTORY) for d in (one, two))
    assert [h["step"] for h in h1] == [h["step"] for h in h2]
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(h1, h2)) < TOLERANCE  # rank 0 logs the global batch's loss
    assert [h.get("eval_accuracy") for h in h1] == [h.get("eval_accuracy") for h in h2]
    for key in ("finetune/val_accuracy", "finetune/control_val_accuracy", "finetune/best_step", "finetune/lr", "finetune/control_lr", "finetune/val_accuracy_lr1"):
        assert metrics[key] == one_metrics[key]
    s1, s2 = (artifacts.read_json(d / SEARCH) for d in (one, two))
    for part in ("classifier", "control"):
        assert [r["steps"] for r in s1[part]["runs"]] == [6, 6] and s1[part]["chosen"] == s2[part]["chosen"]
        losses = [(e1["loss"], e2["loss"]) for r1, r2 in zip(s1[part]["runs"], s2[part]["runs"]) for e1, e2 in zip(r1["evaluations"], r2["evaluations"])]
        assert len(losses) == 4 and max(abs(a - b) for a, b in losses) < TOLERANCE
    from transformers import AutoModelForMaskedLM

    start = AutoModelForMaskedLM.from_pretrained(inputs[1]).bert.embeddings.word_embeddings.weight.detach()
    assert float((weights(one)["bert.embeddings.word_embeddings.weight"] - start).abs().max()) > 1e-3  # the weights did move
    assert (two / artifacts.LOSS_CURVE).is_file() and (two / CONTROL_DIR / "tokenizer.json").is_file()


def test_batch_that_does_not_split_is_one_line_naming_the_fix():
    with pytest.raises(UserError, match="batch_size 15 does not split into nproc 2 equal parts: make batch_size a multiple of nproc") as info:
        FinetuneConfig.from_params({**PARAMS, "batch_size": 15, "nproc": 2}, "finetune")
    assert "\n" not in str(info.value)


def test_a_rank_error_reaches_the_caller_as_one_line(inputs, tmp_path):
    config = FinetuneConfig.from_params({**PARAMS, "nproc": 2, "label_names": ["only-one"]}, "finetune")
    with pytest.raises(UserError, match="finetune.label_names has 1 names") as info:
        finetune(*inputs, tmp_path / "out", config)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu_is_one_clear_line(cleaned_dir, mlm_dir, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: finetune.device=cuda is valid here")
    config = FinetuneConfig.from_params({"max_steps": 1, "batch_size": 16, "device": "cuda"}, "finetune")
    with pytest.raises(UserError, match=r"^finetune\.device is cuda but no CUDA device is visible: set finetune\.device=cpu or auto$"):
        finetune(cleaned_dir, mlm_dir, tmp_path / "out", config)
    assert not (tmp_path / "out").exists()
