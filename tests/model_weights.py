"""Saved weights of a model folder, and the largest difference between two such sets (tests)."""

from __future__ import annotations


def weights(model_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
