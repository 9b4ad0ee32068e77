"""Training checkpoints: everything a killed run needs to continue exactly where it stopped.

A checkpoint is a folder `step-0000100/` holding one `state.pt` (model, optimizer and scheduler
states, every random generator, the position in the data, the loss history). It is written under
a temporary name and renamed when complete, so the newest folder whose name parses is always a
whole checkpoint, even after `kill -9` in the middle of a write.

It holds only tensors and plain values (numbers, strings, lists, dicts: the numpy and Python RNG
states are converted), so it is read with `torch.load(weights_only=True)`: a checkpoint folder
is a path anyone may pass (`pretrain.checkpoint_dir`, a shared volume), and a full unpickle of a
crafted file would run its code. Such a file is refused with one line instead.
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
    ignore = {"log_every", "checkpoint_every", "checkpoint_dir", "threads", "nproc", "compile"}
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

    # numpy's state is (name, uint32 keys, pos, has_gauss, cached_gaussian) and Python's (version,
    # 625 ints, gauss): as a tensor and plain lists, so that weights_only loading accepts them.
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
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
    """The checkpoint's state; a file holding anything but tensors and plain values (a crafted
    pickle, or a checkpoint of an older LMForge) is refused without running any of it."""
    import pickle

    import torch

    from components.shared.errors import UserError

    file = Path(path) / "state.pt"
    try:
        state = torch.load(file, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"checkpoint {file} is not a plain tensor checkpoint and was not loaded ({reason}): delete {Path(path).parent} to start afresh, or set pretrain.checkpoint_dir to a folder of LMForge checkpoints"
        ) from None
    if not isinstance(state, dict) or not {"step", "model", "optimizer", "rng"} <= state.keys():
        raise UserError(f"checkpoint {file} is not an LMForge training checkpoint (no step, model, optimizer and rng): delete {Path(path).parent} to start afresh")
    return state


def step_of(path: Path) -> int:
    return int(_NAME.match(Path(path).name).group(1))


def remove(ckpt_dir: Path | None) -> None:
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
