"""Baselines that stand beside every score: the majority class, and TF-IDF + logistic regression.

Both learn from the train split only, as the neural models do. TF-IDF + LR chooses its few
settings on the validation split only: its signature takes no test labels, so it cannot look at
them. A pretrained encoder that does not beat a bag of n-grams has not yet earned its cost.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

# The grid: inverse regularisation strength x word n-gram range. Four decades of C cover short
# sentences (want more regularisation) to long articles (want less); bigrams catch "not good".
C_VALUES = (0.25, 1.0, 4.0, 16.0)
NGRAM_RANGES = ((1, 1), (1, 2))
GRID = tuple(itertools.product(NGRAM_RANGES, C_VALUES))  # in the order tried; ties keep the first
MAX_FEATURES = 200_000  # bounds memory and time on long documents; far above what short sentences reach
MIN_DF = 2  # an n-gram in one train text only cannot generalise; dropping them halves the time on long articles
IMBALANCE_RATIO = 1.5  # largest / smallest train class above this: weight classes by inverse frequency


def majority_label(train_labels: Sequence[int]) -> int:
    """The most frequent train label (the smallest on ties), predicted for every test item."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return int(values[np.argmax(counts)])


def class_weight(train_labels: Sequence[int]) -> str | None:
    """'balanced' for an imbalanced train set (so rare classes are not ignored, which macro-F1
    would punish), None when the classes are about even (weights would be ~1 anyway)."""
    _, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return "balanced" if counts.max() > IMBALANCE_RATIO * counts.min() else None


def vectorizer(ngram_range: tuple[int, int], min_df: int = MIN_DF):
    from sklearn.feature_extraction.text import TfidfVectorizer

    # sublinear tf: a word said ten times is not ten times the evidence (matters on long articles)
    return TfidfVectorizer(analyzer="word", ngram_range=ngram_range, sublinear_tf=True, min_df=min_df, max_features=MAX_FEATURES, dtype=np.float32)


def fit_features(ngram_range: tuple[int, int], train_texts: Sequence[str]):
    """The vectorizer fitted on train (vocabulary and idf from train only) and the train matrix;
    a train set too small to repeat any n-gram keeps them all instead."""
    try:
        vec = vectorizer(ngram_range)
        return vec, vec.fit_transform(train_texts)
    except ValueError:  # "After pruning, no terms remain"
        vec = vectorizer(ngram_range, min_df=1)
        return vec, vec.fit_transform(train_texts)


def classifier(C: float, weight: str | None, seed: int):
    from sklearn.linear_model import LogisticRegression

    # lbfgs: deterministic, multinomial for many classes. Keep sklearn's tol (1e-4): at 1e-3 it stopped
    # after a step or two on 10k sentences, near zero weights, at chance accuracy.
    return LogisticRegression(C=C, class_weight=weight, solver="lbfgs", max_iter=1000, random_state=seed)


def tfidf_logreg(
    train_texts: Sequence[str], train_labels: Sequence[int], val_texts: Sequence[str], val_labels: Sequence[int], test_texts: Sequence[str], seed: int,
) -> tuple[np.ndarray, dict]:
    """Fit TF-IDF + logistic regression on train for each point of GRID, keep the one with the
    best validation accuracy (the first, i.e. simplest, on ties), predict test. Returns (test predictions, what
    was chosen: C, n-gram range, analyzer, class weight, validation accuracy of every candidate)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    y_train, y_val = np.asarray(train_labels), np.asarray(val_labels)
    if len(np.unique(y_train)) < 2:  # nothing to separate: the majority class is all it can say
        label = majority_label(y_train)
        return np.full(len(test_texts), label, dtype=np.int64), {"single_class": label, "candidates": []}
    # One BLAS thread: these sparse fits gain nothing from more, and on a busy 2-core machine
    # threads waiting on each other made them 5x slower.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a capped fit is still a fair baseline
        return _grid_search(train_texts, y_train, val_texts, y_val, test_texts, seed)


def _grid_search(train_texts, y_train, val_texts, y_val, test_texts, seed: int) -> tuple[np.ndarray, dict]:
    weight = class_weight(y_train)
    best, candidates = None, []
    for ngram_range in NGRAM_RANGES:
        vec, x_train = fit_features(ngram_range, train_texts)
        x_val = vec.transform(val_texts)
        for C in C_VALUES:
            model = classifier(C, weight, seed).fit(x_train, y_train)
            acc = float((model.predict(x_val) == y_val).mean())
            candidates.append({"C": C, "ngram_range": list(ngram_range), "val_accuracy": acc})
            if best is None or acc > best[0]:
                best = (acc, C, ngram_range, vec, model)
    acc, C, ngram_range, vec, model = best
    preds = model.predict(vec.transform(test_texts)).astype(np.int64)
    chosen = {"C": C, "ngram_range": list(ngram_range), "analyzer": "word", "sublinear_tf": True, "class_weight": weight or "none",
              "min_df": vec.min_df, "val_accuracy": acc, "n_features": int(len(vec.vocabulary_)), "candidates": candidates}  # fmt: skip
    return preds, chosen


def describe_tfidf(params: dict) -> str:
    """One line for reports and the model card: what tfidf_logreg chose, and on what."""
    if "single_class" in params:
        return f"one class in train: predicts {params['single_class']} everywhere"
    low, high = params["ngram_range"]
    grams = f"word {low}-{high}-grams" if high > low else f"word {low}-grams"
    return (f"C={params['C']:g}, {grams}, sublinear tf, class weight {params['class_weight']}: validation accuracy "
            f"{params['val_accuracy']:.4f}, best of {len(params['candidates'])} settings")
