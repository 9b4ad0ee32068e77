"""Training checkpoints: everything a killed run needs to continue exactly where it stopped.

A checkpoint is a folder `step-0000100/` holding one `state.pt` (model, optimizer and scheduler
states, every random generator, the position in the data, the loss history). It is written under
a temporary name and renamed when complete, so the newest folder whose name parses is always a
whole checkpoint, even after `kill -9` in the middle of a write.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np

_NAME = re.compile(r"^step-(\d{7})$")
KEEP = 2  # the newest two: one to resume from even if the newest is somehow unreadable


def default_dir(project_dir: Path, config: dict, cleaned_dir: Path) -> Path:
    """Where a re-run of the same training finds the checkpoints of an interrupted one.

    Outside the task's output folder (kfp.local gives every run a new one) and keyed by what
    determines the result: the training config (minus logging and checkpoint knobs) and the
    cleaned data's report (its tokenizer hash and block counts). The folder is removed when
    training completes, so only an interrupted run leaves one behind.
    """
    ignore = {"log_every", "checkpoint_every", "checkpoint_dir", "keep_checkpoints", "threads", "nproc", "compile"}
    key = {k: v for k, v in config.items() if k not in ignore}
    report = Path(cleaned_dir) / "clean_report.json"
    data = report.read_text() if report.is_file() else str(Path(cleaned_dir).resolve())
    digest = hashlib.sha256((json.dumps(key, sort_keys=True, default=str) + data).encode()).hexdigest()[:16]
    return Path(project_dir) / "local_outputs" / "checkpoints" / f"pretrain-{digest}"


def latest(ckpt_dir: Path | None) -> Path | None:
    """The newest complete checkpoint in `ckpt_dir`, or None."""
    if ckpt_dir is None or not Path(ckpt_dir).is_dir():
        return None
    done = sorted(p for p in Path(ckpt_dir).iterdir() if _NAME.match(p.name) and (p / "state.pt").is_file())
    return done[-1] if done else None


def rng_states() -> dict:
    import torch

    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(ckpt_dir: Path, step: int, state: dict) -> Path:
    """Write `state` as checkpoint `step` atomically; drop all but the newest KEEP."""
    import torch

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step:07d}"
    tmp = ckpt_dir / f".tmp-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / "state.pt", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it visible
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(p for p in ckpt_dir.iterdir() if _NAME.match(p.name))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: Path, device="cpu") -> dict:
    import torch

    # weights_only=False: the file holds numpy and python RNG states, and it is our own file.
    return torch.load(Path(path) / "state.pt", map_location=device, weights_only=False)


def step_of(path: Path) -> int:
    return int(_NAME.match(Path(path).name).group(1))


def remove(ckpt_dir: Path | None) -> None:
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
