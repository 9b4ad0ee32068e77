"""Baselines that stand beside every score: for classification the majority class and TF-IDF +
logistic regression, for regression the train mean and TF-IDF + ridge regression.

All learn from the train split only, as the neural models do. The TF-IDF models choose their few
settings on the validation split only: their signatures take no test labels, so they cannot look
at them. A pretrained encoder that does not beat a bag of n-grams has not yet earned its cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

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
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    val_texts: Sequence[str],
    val_labels: Sequence[int],
    test_texts: Sequence[str],
    seed: int,
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
    return f"C={params['C']:g}, {grams}, sublinear tf, class weight {params['class_weight']}: validation accuracy {params['val_accuracy']:.4f}, best of {len(params['candidates'])} settings"


# Ridge: four decades of the L2 penalty (sklearn's alpha; the larger, the smoother) x the same n-grams.
ALPHAS = (0.1, 1.0, 10.0, 100.0)
RIDGE_GRID = tuple(itertools.product(NGRAM_RANGES, ALPHAS))  # in the order tried; ties keep the first


def train_mean(train_targets: Sequence[float]) -> float:
    """The mean train target, predicted for every test item (regression's majority class)."""
    return float(np.mean(np.asarray(train_targets, dtype=np.float64)))


def tfidf_ridge(
    train_texts: Sequence[str],
    train_targets: Sequence[float],
    val_texts: Sequence[str],
    val_targets: Sequence[float],
    test_texts: Sequence[str],
) -> tuple[np.ndarray, dict]:
    """Fit TF-IDF + ridge regression on train for each point of RIDGE_GRID, keep the one with the
    lowest validation RMSE (the first on ties), predict test. Returns (test predictions, what was
    chosen: alpha, n-gram range, validation RMSE of every candidate). Like tfidf_logreg, it takes
    no test targets."""
    from sklearn.linear_model import Ridge
    from threadpoolctl import threadpool_limits

    y_train, y_val = np.asarray(train_targets, dtype=np.float64), np.asarray(val_targets, dtype=np.float64)
    candidates, best = [], None
    with threadpool_limits(limits=1):  # one BLAS thread, as tfidf_logreg (sparse fits gain nothing from more)
        for ngram_range in NGRAM_RANGES:
            vec, x_train = fit_features(ngram_range, train_texts)
            x_val = vec.transform(val_texts)
            for alpha in ALPHAS:
                model = Ridge(alpha=alpha).fit(x_train, y_train)  # sparse input: a deterministic direct/iterative solver
                rmse = float(np.sqrt(np.mean((model.predict(x_val) - y_val) ** 2)))
                candidates.append({"alpha": alpha, "ngram_range": list(ngram_range), "val_rmse": rmse})
                if best is None or rmse < best[0]:
                    best = (rmse, alpha, ngram_range, vec, model)
    rmse, alpha, ngram_range, vec, model = best
    preds = model.predict(vec.transform(test_texts)).astype(np.float64)
    chosen = {"alpha": alpha, "ngram_range": list(ngram_range), "analyzer": "word", "sublinear_tf": True, "min_df": vec.min_df,
              "val_rmse": rmse, "n_features": int(len(vec.vocabulary_)), "candidates": candidates}  # fmt: skip
    return preds, chosen


def describe_ridge(params: dict) -> str:
    """One line for reports and the model card: what tfidf_ridge chose, and on what."""
    low, high = params["ngram_range"]
    grams = f"word {low}-{high}-grams" if high > low else f"word {low}-grams"
    return f"alpha={params['alpha']:g}, {grams}, sublinear tf: validation RMSE {params['val_rmse']:.4f}, best of {len(params['candidates'])} settings"
