"""DDP: two gloo processes on the CPU train the same model as one process, within a stated tolerance.

Both compute the gradient of the same global batch (same block order and masks on every rank;
each rank takes half the rows), so they differ only in the order floats are summed. Dropout is off
here: its masks come from each process's own generator and would legitimately differ.
Measured on this machine (10 steps, tiny model, fp32): max |w2 - w1| = 7.5e-9; the logged losses agree to 4 decimals.
"""

from __future__ import annotations

import pytest
from model_weights import max_diff, weights

from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64, "dropout": 0.0}
PARAMS = {"model": TINY, "max_steps": 10, "batch_size": 16, "seed": 5, "log_every": 5, "threads": 1, "checkpoint_every": 0}
TOLERANCE = 1e-4  # max abs difference of any weight after 10 steps (and of any step's loss)


@pytest.fixture(scope="module")
def single(cleaned_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "one"
    pretrain(cleaned_dir, out, PretrainConfig.from_params(PARAMS, "pretrain"), checkpoint_dir=out.parent / "ckpt1")
    return out


def test_two_gloo_processes_match_one(cleaned_dir, single, tmp_path):
    out = tmp_path / "two"
    metrics = pretrain(cleaned_dir, out, PretrainConfig.from_params({**PARAMS, "nproc": 2}, "pretrain"), checkpoint_dir=tmp_path / "ckpt2")
    assert metrics["pretrain/processes"] == 2
    diff = max_diff(weights(single), weights(out))
    print(f"max |w(2 procs) - w(1 proc)| = {diff:.3g}")
    assert diff < TOLERANCE
    one, two = ([h["loss"] for h in artifacts.read_json(d / artifacts.HISTORY)] for d in (single, out))
    assert len(one) == len(two) == PARAMS["max_steps"]
    assert max(abs(x - y) for x, y in zip(one, two)) < TOLERANCE
    assert weights(single)["cls.predictions.bias"].abs().sum() > 0  # the weights did move
    assert metrics["pretrain/final_loss"] == pytest.approx(two[-1])  # rank 0 reports the all-reduced loss


def test_gradient_accumulation_matches_one_big_batch(cleaned_dir, single, tmp_path):
    out = tmp_path / "accum"
    pretrain(cleaned_dir, out, PretrainConfig.from_params({**PARAMS, "grad_accum": 4}, "pretrain"), checkpoint_dir=tmp_path / "ckpt")
    assert max_diff(weights(single), weights(out)) < TOLERANCE


def test_a_rank_error_reaches_the_caller_as_one_line(cleaned_dir, tmp_path):
    from components.shared.errors import UserError

    with pytest.raises(UserError, match="training blocks for batch_size") as info:
        pretrain(cleaned_dir, tmp_path / "out", PretrainConfig.from_params({**PARAMS, "nproc": 2, "batch_size": 100000}, "pretrain"), checkpoint_dir=tmp_path / "c")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
