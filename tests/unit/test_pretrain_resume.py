"""pretrain checkpoints: kill -9 in the middle, run again, and the weights equal an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from model_weights import weights

from components.pretrain import checkpoint
from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
# Enough steps that the first checkpoint (step 5) comes long before the end, so the kill lands mid-run.
PARAMS = {"model": TINY, "max_steps": 300, "batch_size": 8, "seed": 3, "log_every": 50, "threads": 1, "checkpoint_every": 5}

RUN = """
import json, sys
from pathlib import Path
from components.pretrain.pretrain import PretrainConfig, pretrain
a = json.loads(sys.argv[1])
pretrain(Path(a["cleaned"]), Path(a["out"]), PretrainConfig.from_params(a["params"], "pretrain"), checkpoint_dir=Path(a["ckpt"]))
"""


def test_killed_run_resumes_to_identical_weights(cleaned_dir, tmp_path):
    import torch

    config = PretrainConfig.from_params(PARAMS, "pretrain")
    pretrain(cleaned_dir, tmp_path / "straight", config, checkpoint_dir=tmp_path / "ckpt-straight")
    assert not (tmp_path / "ckpt-straight").exists()  # removed once training completed

    ckpt = tmp_path / "ckpt"
    args = json.dumps({"cleaned": str(cleaned_dir), "out": str(tmp_path / "resumed"), "params": PARAMS, "ckpt": str(ckpt)})
    proc = subprocess.Popen([sys.executable, "-c", RUN, args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while checkpoint.latest(ckpt) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended on its own before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    saved = checkpoint.latest(ckpt)
    assert saved is not None and 0 < checkpoint.step_of(saved) < PARAMS["max_steps"]
    assert not (tmp_path / "resumed").exists()  # nothing half written

    metrics = pretrain(cleaned_dir, tmp_path / "resumed", config, checkpoint_dir=ckpt)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    history = [artifacts.read_json(tmp_path / n / artifacts.HISTORY) for n in ("straight", "resumed")]
    assert history[0] == history[1] and len(history[0]) == PARAMS["max_steps"]
    assert metrics["pretrain/final_loss"] > 0 and not ckpt.exists()


def test_a_torn_checkpoint_is_ignored(cleaned_dir, tmp_path):
    """A write cut short leaves only a temporary folder: the next run starts from the start."""
    ckpt = tmp_path / "ckpt"
    (ckpt / ".tmp-step-0000005-123").mkdir(parents=True)
    (ckpt / ".tmp-step-0000005-123" / "state.pt").write_bytes(b"half a file")
    (ckpt / "step-0000010").mkdir()  # a folder without its state file
    assert checkpoint.latest(ckpt) is None
    config = PretrainConfig.from_params({**PARAMS, "max_steps": 6}, "pretrain")
    pretrain(cleaned_dir, tmp_path / "out", config, checkpoint_dir=ckpt)
    assert len(artifacts.read_json(tmp_path / "out" / artifacts.HISTORY)) == 6


def test_checkpoints_keep_only_the_newest(cleaned_dir, tmp_path, monkeypatch):
    """While training, older checkpoints are pruned; each one holds the data position and RNGs."""
    seen = []
    save = checkpoint.save

    def spy(ckpt_dir, step, state):
        path = save(ckpt_dir, step, state)
        seen.append(sorted(p.name for p in ckpt_dir.iterdir() if p.name != ".owner.lock"))  # the live run's lock stays beside them
        return path

    monkeypatch.setattr(checkpoint, "save", spy)
    config = PretrainConfig.from_params({**PARAMS, "max_steps": 21}, "pretrain")
    pretrain(cleaned_dir, tmp_path / "out", config, checkpoint_dir=tmp_path / "ckpt")
    assert seen[-1] == ["step-0000015", "step-0000020"] and len(seen) == 4


@pytest.mark.parametrize("bad", [{"batch_size": 8, "grad_accum": 3}, {"batch_size": 6, "nproc": 4}])
def test_batch_must_split_into_micro_batches(bad):
    from components.shared.errors import UserError

    with pytest.raises(UserError, match="does not split into grad_accum"):
        PretrainConfig.from_params({**PARAMS, **bad}, "pretrain")


class _Payload:
    """Unpickling this object calls `open(marker, 'w')`: the marker file proves that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("as_zip", [True, False], ids=["torch.save", "plain-pickle"])
def test_a_crafted_checkpoint_runs_no_code(cleaned_dir, tmp_path, as_zip):
    """A state.pt whose unpickling would write a file, given through pretrain.checkpoint_dir: one
    line, nothing executed, nothing written."""
    import pickle

    import torch

    from components.shared.errors import UserError

    marker, ckpt = tmp_path / "pwned", tmp_path / "shared-volume" / "ckpt"
    (ckpt / "step-0000005").mkdir(parents=True)
    state = {"step": 5, "model": {}, "optimizer": {}, "rng": _Payload(str(marker))}
    with open(ckpt / "step-0000005" / "state.pt", "wb") as f:
        torch.save(state, f) if as_zip else pickle.dump(state, f)
    config = PretrainConfig.from_params({**PARAMS, "max_steps": 6, "checkpoint_dir": str(ckpt)}, "pretrain")
    with pytest.raises(UserError) as err:
        pretrain(cleaned_dir, tmp_path / "out", config)
    assert not marker.exists(), "the checkpoint's payload ran"
    message = str(err.value)
    assert "\n" not in message and "not a plain tensor checkpoint" in message and str(ckpt) in message
    assert not (tmp_path / "out").exists()


def test_checkpoint_state_is_plain(cleaned_dir, tmp_path):
    """What `save` writes loads with weights_only=True, RNG states included, and restores them."""
    import random

    import numpy as np
    import torch

    states = checkpoint.rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.save(tmp_path, 7, {"step": 7, "model": {"w": torch.ones(2)}, "optimizer": {}, "rng": states})
    loaded = torch.load(tmp_path / "step-0000007" / "state.pt", weights_only=True)
    checkpoint.set_rng_states(loaded["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
