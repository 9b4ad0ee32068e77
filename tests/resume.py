"""A pretraining run stopped right after its first checkpoint, as a killed process would be (tests of exact resume)."""

from __future__ import annotations

import pytest

from components.pretrain import checkpoint


def stopped_after_first_checkpoint(monkeypatch, run) -> None:
    """Call `run()` with `checkpoint.save` raising KeyboardInterrupt once its first save is on disk;
    `checkpoint.save` is the real one again afterwards."""
    save = checkpoint.save

    def save_then_die(ckpt_dir, step, state):
        save(ckpt_dir, step, state)
        raise KeyboardInterrupt  # the process is stopped right after its first checkpoint

    with monkeypatch.context() as patched:
        patched.setattr(checkpoint, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            run()
