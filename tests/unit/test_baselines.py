"""The baselines: TF-IDF + logistic regression chooses on validation only and beats the majority."""

from __future__ import annotations

import inspect
import random

import numpy as np
import pytest
from tiny_data import NEGATIVE, NOUNS, POSITIVE, SUBJECTS

from components.tasks.baselines import GRID, class_weight, majority_label, tfidf_logreg


def negation_set(n: int = 600, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """'The director said the plot was not dull.' -> positive: the label is the adjective's polarity
    flipped by "not", which no weighting of single words can express (an XOR), but bigrams can."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        positive, negated = rng.random() < 0.5, rng.random() < 0.5
        adj = rng.choice(POSITIVE if positive else NEGATIVE)
        texts.append(f"{rng.choice(SUBJECTS)} said {rng.choice(NOUNS)} was {'not ' if negated else ''}{adj}.")
        labels.append(int(positive != negated))
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def negation():
    texts, y = negation_set()
    split = {"train": slice(0, 400), "val": slice(400, 500), "test": slice(500, 600)}
    data = {k: (texts[s], y[s]) for k, s in split.items()}
    preds, chosen = tfidf_logreg(*data["train"], *data["val"], data["test"][0], seed=0)
    return data, preds, chosen


def test_chooses_the_candidate_with_the_best_validation_accuracy(negation):
    """Each setting refitted here with scikit-learn directly: the chosen one is the first best."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    data, preds, chosen = negation
    scores, test_preds = [], []
    for ngram_range, C in GRID:
        pipe = make_pipeline(TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True, min_df=2), LogisticRegression(C=C, max_iter=1000))
        pipe.fit(*data["train"])
        scores.append((pipe.predict(data["val"][0]) == data["val"][1]).mean())
        test_preds.append(pipe.predict(data["test"][0]))
    assert [c["val_accuracy"] for c in chosen["candidates"]] == pytest.approx(scores, abs=1e-9)
    best = int(np.argmax(scores))
    assert (tuple(chosen["ngram_range"]), chosen["C"]) == GRID[best] and chosen["val_accuracy"] == pytest.approx(max(scores))
    assert np.array_equal(preds, test_preds[best])
    # Negation is a bigram's job: unigram settings stay near chance, the chosen one does not.
    assert chosen["ngram_range"] == [1, 2] and max(scores[: len(GRID) // 2]) < 0.8 < chosen["val_accuracy"]
    assert (preds == data["test"][1]).mean() > 0.9


def test_takes_no_test_labels_and_is_deterministic(negation):
    params = list(inspect.signature(tfidf_logreg).parameters)
    assert params == ["train_texts", "train_labels", "val_texts", "val_labels", "test_texts", "seed"]
    data, preds, chosen = negation
    again, chosen_again = tfidf_logreg(*data["train"], *data["val"], data["test"][0], seed=0)
    assert np.array_equal(again, preds) and chosen_again == chosen


def test_beats_the_majority_baseline_on_the_tiny_reviews(labeled_rows):
    train, val, test = (labeled_rows[labeled_rows.split == s] for s in ("train", "validation", "test"))
    preds, chosen = tfidf_logreg(train.text.tolist(), train.label.to_numpy(), val.text.tolist(), val.label.to_numpy(), test.text.tolist(), seed=0)
    majority = (test.label == majority_label(train.label)).mean()
    assert (preds == test.label.to_numpy()).mean() >= majority + 0.3 and chosen["val_accuracy"] > 0.9


def test_majority_and_class_weights():
    assert majority_label([2, 0, 2, 1, 0]) == 0  # ties: the smallest label, as pandas' mode
    assert class_weight([0, 1] * 50) is None and class_weight([0] * 80 + [1] * 20) == "balanced"
    preds, chosen = tfidf_logreg(["a b", "c d"], [1, 1], ["a"], [1], ["x", "y"], seed=0)
    assert preds.tolist() == [1, 1] and chosen["single_class"] == 1


@pytest.fixture(scope="module")
def labeled_rows():
    import pandas as pd
    from tiny_data import labeled_sentences

    return pd.DataFrame(labeled_sentences())
