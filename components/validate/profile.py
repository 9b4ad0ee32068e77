"""The train split's profile, from which the labeled suite's bounds are derived.

A new dataset validates without switching anything off because nothing in the suite is the
demo's: the label set, each class's share and the text lengths come from the train rows, and
validation and test are held to them. What a broken set trips over is named by the
expectation's description in the one-line failure.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

QUANTILES = (0.05, 0.5, 0.95)  # text-length percentiles compared between train and the eval splits
SHARE_SE = 4.0  # standard errors of a class share allowed for chance: p(false alarm) ~ 6e-5 per check
EVAL_SPLITS = ("validation", "test")


def share_column(label) -> str:
    """The 0/1 indicator column whose mean is the share of class `label` (GX checks a mean)."""
    return f"label={label}"


def share_columns(labeled: pd.DataFrame) -> dict[str, pd.Series]:
    return {share_column(c): (labeled["label"] == c).astype("int64") for c in sorted(labeled["label"].dropna().unique())}


def labeled_profile(labeled: pd.DataFrame) -> dict:
    """Classes, class shares, text-length quantiles of train, and the size of every split."""
    train = labeled[labeled["split"] == "train"]
    shares = train["label"].value_counts(normalize=True).sort_index()
    lengths = train["text"].str.len().to_numpy()
    return {
        "labels": [int(c) for c in shares.index],
        "shares": {int(c): float(v) for c, v in shares.items()},
        "length_quantiles": [float(np.quantile(lengths, q)) for q in QUANTILES] if len(lengths) else [],
        "rows": {s: int((labeled["split"] == s).sum()) for s in ("train", *EVAL_SPLITS)},
    }


def share_bounds(share: float, rows: int, tolerance: float) -> tuple[float, float]:
    """[low, high] for a class's share of a split of `rows` rows, given its train share."""
    slack = max(tolerance, SHARE_SE * math.sqrt(share * (1 - share) / max(rows, 1)))
    return max(0.0, share - slack), min(1.0, share + slack)
