"""Deterministic train/validation/test assignment from a hash of a stable id.

A hash (not a random shuffle) keeps a row in the same split when rows are added or removed, so
a test sentence never leaks into training between data versions.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "validation", "test")


def split_of(row_id: str, validation_pct: int = 10, test_pct: int = 10) -> str:
    bucket = int(hashlib.sha256(str(row_id).encode()).hexdigest()[:8], 16) % 100
    if bucket < 100 - validation_pct - test_pct:
        return "train"
    return "validation" if bucket < 100 - test_pct else "test"
