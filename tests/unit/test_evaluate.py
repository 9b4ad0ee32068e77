"""evaluate: scores of the session's tiny classifier and MLM, checked against the data itself."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.evaluate.evaluate import EvaluateConfig, evaluate
from components.shared import artifacts
from components.shared.errors import UserError


@pytest.fixture(scope="module")
def report(eval_dir) -> dict:
    return artifacts.read_json(eval_dir / artifacts.EVAL_REPORT)


@pytest.fixture(scope="module")
def labeled(cleaned_dir) -> pd.DataFrame:
    return pd.read_parquet(cleaned_dir / artifacts.LABELED)


def test_accuracy_is_the_trace_of_the_confusion_matrix(report, labeled):
    cm = np.array(report["confusion_matrix"])
    n_test = int((labeled.split == "test").sum())
    assert report["n_test"] == n_test == cm.sum() > 0
    assert cm.shape == (2, 2) and report["labels"] == [0, 1]
    assert report["accuracy"] == pytest.approx(np.trace(cm) / n_test)
    # Rows are the true labels: their sums are the test label counts.
    counts = labeled[labeled.split == "test"]["label"].value_counts()
    assert cm.sum(axis=1).tolist() == [int(counts.get(0, 0)), int(counts.get(1, 0))]


def test_majority_baseline_is_the_train_majority_share_of_test(report, labeled):
    train, test = labeled[labeled.split == "train"], labeled[labeled.split == "test"]
    majority = train["label"].value_counts().idxmax()
    assert report["baseline_majority_accuracy"] == pytest.approx((test["label"] == majority).mean())
    assert report["gain_over_majority"] == pytest.approx(report["accuracy"] - report["baseline_majority_accuracy"])
    assert 0 <= report["baseline_majority_macro_f1"] <= 0.5  # one class predicted: at most half the classes score


def test_macro_f1_is_the_mean_of_per_class_f1(report):
    cm = np.array(report["confusion_matrix"], dtype=float)
    tp = np.diag(cm)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    per_class = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    assert 0.0 <= report["macro_f1"] <= 1.0
    assert report["macro_f1"] == pytest.approx(per_class.mean())


def test_perplexity_is_finite_and_better_than_uniform(report, cleaned_dir):
    vocab = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)["tokens"]["vocab_size"]
    assert math.isfinite(report["perplexity"]) and 1 < report["perplexity"] < vocab
    assert math.isfinite(report["test_loss"]) and report["test_loss"] > 0


def test_confusion_matrix_png_is_an_image(eval_dir):
    import matplotlib.image

    path = eval_dir / artifacts.CONFUSION_PNG
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_html_report_shows_scores_beside_the_baseline_and_embeds_the_matrix(eval_dir, report):
    import base64

    html = (eval_dir / artifacts.EVAL_HTML).read_text()
    assert f"{report['accuracy']:.4f}" in html and f"{report['baseline_majority_accuracy']:.4f}" in html
    assert "held-out masked-LM perplexity" in html  # the objective's word (objectives.*.CARD), not a fixed one
    embedded = {base64.b64decode(part.split("'")[0]) for part in html.split("data:image/png;base64,")[1:]}
    assert embedded == {(eval_dir / artifacts.CONFUSION_PNG).read_bytes(), (eval_dir / artifacts.GATE_PNG).read_bytes()}


def test_perplexity_is_repeatable_with_the_seed(cleaned_dir, mlm_dir, report):
    from components.evaluate.evaluate import heldout_perplexity

    again = heldout_perplexity(mlm_dir, cleaned_dir, EvaluateConfig(threads=1))
    other = heldout_perplexity(mlm_dir, cleaned_dir, EvaluateConfig(threads=1, seed=99))
    assert again == pytest.approx(report["perplexity"], rel=1e-6)
    assert other != pytest.approx(again, rel=1e-9)


def test_missing_classifier_names_the_stage_to_run(cleaned_dir, mlm_dir, tmp_path):
    with pytest.raises(UserError, match="run the finetune stage first"):
        evaluate(cleaned_dir, mlm_dir, tmp_path / "no-classifier", tmp_path / "out" / "eval", EvaluateConfig())
    assert not (tmp_path / "out").exists()


def test_confusion_matrix_reaches_kfp_with_the_class_names(eval_dir, report, classifier_dir):
    from kfp.dsl import ClassificationMetrics
    from transformers import AutoConfig

    from components.shared.reporting import log_confusion_matrix

    names = [AutoConfig.from_pretrained(classifier_dir).id2label[i] for i in report["labels"]]
    assert report["label_names"] == names == ["negative", "positive"]
    kfp = ClassificationMetrics(name="confusion")
    log_confusion_matrix(kfp, eval_dir / artifacts.EVAL_REPORT)
    matrix = kfp.metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == names
    assert [row["row"] for row in matrix["rows"]] == report["confusion_matrix"]


def test_tfidf_baseline_is_reported_beside_the_majority(eval_dir, report, labeled):
    from components.tasks.baselines import GRID

    train, test = labeled[labeled.split == "train"], labeled[labeled.split == "test"]
    majority = (test["label"] == train["label"].value_counts().idxmax()).mean()
    assert report["baseline_tfidf_accuracy"] >= majority + 0.3  # the tiny reviews are separable by their words
    assert report["gain_over_tfidf"] == pytest.approx(report["accuracy"] - report["baseline_tfidf_accuracy"])
    params = report["baseline_tfidf_params"]
    assert (tuple(params["ngram_range"]), params["C"]) in GRID and len(params["candidates"]) == len(GRID)
    assert params["val_accuracy"] == max(c["val_accuracy"] for c in params["candidates"])
    html = (eval_dir / artifacts.EVAL_HTML).read_text()
    assert "<th>TF-IDF + LR</th>" in html and f"{report['baseline_tfidf_macro_f1']:.4f}" in html and report["baseline_tfidf_chosen"] in html
