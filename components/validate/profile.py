"""The train split's profile, from which the labeled suite's bounds are derived.

A new dataset validates without switching anything off because nothing in the suite is the
demo's: the label set, each class's share (the task's `label_profile`: a regression target has
no classes) and the text lengths come from the train rows, and validation and test are held to them. What a broken set trips over is named by the
expectation's description in the one-line failure.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pandas as pd

from components.tasks.classification import share_column  # noqa: F401 (the class-share columns' names)

QUANTILES = (0.05, 0.5, 0.95)  # text-length percentiles compared between train and the eval splits
SHARE_SE = 4.0  # standard errors of a class share allowed for chance: p(false alarm) ~ 6e-5 per check
EVAL_SPLITS = ("validation", "test")


def labeled_profile(labeled: pd.DataFrame, task: ModuleType) -> dict:
    """The task's profile of the train labels (classes and class shares), text-length quantiles
    of train, and the size of every split."""
    train = labeled[labeled["split"] == "train"]
    lengths = train["text"].str.len().to_numpy()
    return {
        **task.label_profile(train["label"]),
        "length_quantiles": [float(np.quantile(lengths, q)) for q in QUANTILES] if len(lengths) else [],
        "rows": {s: int((labeled["split"] == s).sum()) for s in ("train", *EVAL_SPLITS)},
    }


def share_bounds(share: float, rows: int, tolerance: float) -> tuple[float, float]:
    """[low, high] for a class's share of a split of `rows` rows, given its train share."""
    slack = max(tolerance, SHARE_SE * math.sqrt(share * (1 - share) / max(rows, 1)))
    return max(0.0, share - slack), min(1.0, share + slack)
