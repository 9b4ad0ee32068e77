"""The regression task (components/tasks/regression.py): its metrics, its baselines (chosen on
validation only), its label checks, and its config; the whole DAG runs in tests/local."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from tiny_data import scored_sentences

from components.shared.errors import UserError
from components.tasks import baselines, regression


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return pd.DataFrame(scored_sentences())


def splits(rows):
    return [rows[rows.split == s] for s in ("train", "validation", "test")]


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_match_scipy_and_numpy_row_by_row():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 40))
    pred = y + rng.normal(scale=0.7, size=y.shape)
    pred[:, :4] = pred[:, 4:8]  # ties, which Spearman averages
    got = regression.metric_values(y, pred)
    for i in range(len(y)):
        assert got["pearson"][i] == pytest.approx(pearsonr(y[i], pred[i])[0], abs=1e-12)
        assert got["spearman"][i] == pytest.approx(spearmanr(y[i], pred[i])[0], abs=1e-12)
        assert got["rmse"][i] == pytest.approx(np.sqrt(np.mean((y[i] - pred[i]) ** 2)), abs=1e-12)


def test_a_constant_prediction_has_no_correlation_and_the_rmse_of_the_spread():
    y = np.array([-2.0, -1.0, 0.5, 1.0, 3.0])
    got = regression.metric_values(y, np.full(5, y.mean()))
    assert got["pearson"][0] == 0.0 and got["spearman"][0] == 0.0  # not nan: the train-mean baseline scores 0
    assert got["rmse"][0] == pytest.approx(y.std())
    perfect = regression.metric_values(y, y * 2 + 1)  # a line: perfect correlation, not perfect RMSE
    assert perfect["pearson"][0] == pytest.approx(1.0) and perfect["spearman"][0] == pytest.approx(1.0) and perfect["rmse"][0] > 1


def test_the_gate_compares_regression_metrics_and_rmse_lower_is_better():
    from components.evaluate.gate import GateConfig, choose_baseline, compare, decide

    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    good, worse = y + rng.normal(scale=0.3, size=300), y + rng.normal(scale=0.9, size=300)
    rules = GateConfig(metrics=["pearson", "spearman", "rmse"], tolerance={"pearson": 0.02, "spearman": 0.02, "rmse": 0.05}, baseline="mean")
    vs = compare(y, good, worse, 1, rules, regression)
    for m in ("pearson", "spearman", "rmse"):
        assert vs[m]["low"] <= vs[m]["diff"] <= vs[m]["high"]
    assert vs["pearson"]["diff"] > 0 > vs["rmse"]["diff"]  # the better model: higher correlation, lower RMSE
    champion = {"version": "1"}
    assert decide(rules, champion, vs, None, regression)["passed"]
    back = decide(rules, champion, compare(y, worse, good, 1, rules, regression), None, regression)
    assert not back["passed"] and any(r.startswith("rmse rose") and "above the champion" in r for r in back["reasons"])
    # Without a champion: Pearson over the train mean (which scores 0) decides.
    gate = {"vs_mean": compare(y, good, np.full(300, y.mean()), 1, rules, regression), "vs_ridge": compare(y, good, worse, 1, rules, regression)}
    chosen = choose_baseline(rules, gate, regression)
    assert chosen["title"] == "train-mean baseline" and chosen["gain"] == pytest.approx(gate["vs_mean"]["pearson"]["new"])
    verdict = decide(rules, None, None, chosen, regression)
    assert verdict["passed"] and "pearson +0." in verdict["summary"] and "over the train-mean baseline" in verdict["summary"]


# --- baselines ----------------------------------------------------------------------------------


def test_ridge_takes_no_test_targets_and_is_deterministic(rows):
    assert list(inspect.signature(baselines.tfidf_ridge).parameters) == ["train_texts", "train_targets", "val_texts", "val_targets", "test_texts"]
    train, val, test = splits(rows)
    args = (train.text.tolist(), train.score.to_numpy(), val.text.tolist(), val.score.to_numpy(), test.text.tolist())
    preds, chosen = baselines.tfidf_ridge(*args)
    again, chosen_again = baselines.tfidf_ridge(*args)
    assert np.array_equal(preds, again) and chosen == chosen_again
    assert len(chosen["candidates"]) == len(baselines.RIDGE_GRID)


def test_ridge_chooses_the_lowest_validation_rmse(rows):
    """Each setting refitted here with scikit-learn directly: the chosen one is the first with the
    lowest validation RMSE."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    train, val, test = splits(rows)
    preds, chosen = baselines.tfidf_ridge(train.text.tolist(), train.score.to_numpy(), val.text.tolist(), val.score.to_numpy(), test.text.tolist())
    val_rmse, fitted = [], []
    for ngram_range, alpha in baselines.RIDGE_GRID:
        pipe = make_pipeline(TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True, min_df=2), Ridge(alpha=alpha)).fit(train.text, train.score)
        val_rmse.append(np.sqrt(np.mean((pipe.predict(val.text) - val.score) ** 2)))
        fitted.append(pipe)
    assert [c["val_rmse"] for c in chosen["candidates"]] == pytest.approx(val_rmse, rel=2e-3)  # float32 features there, float64 here
    best = int(np.argmin(val_rmse))
    assert (tuple(chosen["ngram_range"]), chosen["alpha"]) == baselines.RIDGE_GRID[best] and chosen["val_rmse"] == pytest.approx(min(val_rmse), rel=2e-3)
    assert np.allclose(preds, fitted[best].predict(test.text), atol=1e-3)


def test_the_choice_follows_the_validation_targets_only(rows):
    """Validation targets that one setting predicts exactly make it the choice, whatever test holds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    train, val, test = splits(rows)
    for target in (0, len(baselines.RIDGE_GRID) - 1):
        ngram_range, alpha = baselines.RIDGE_GRID[target]
        pipe = make_pipeline(TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True, min_df=2), Ridge(alpha=alpha)).fit(train.text, train.score)
        _, chosen = baselines.tfidf_ridge(train.text.tolist(), train.score.to_numpy(), val.text.tolist(), pipe.predict(val.text), test.text.tolist())
        assert (tuple(chosen["ngram_range"]), chosen["alpha"]) == (ngram_range, alpha)
    assert baselines.describe_ridge(chosen).startswith(f"alpha={alpha:g}, word 1-2-grams, sublinear tf: validation RMSE")


def test_ridge_beats_the_train_mean_on_the_tiny_reviews(rows):
    train, val, test = splits(rows)
    preds, _ = baselines.tfidf_ridge(train.text.tolist(), train.score.to_numpy(), val.text.tolist(), val.score.to_numpy(), test.text.tolist())
    y = test.score.to_numpy()
    mean_rmse = np.sqrt(np.mean((y - baselines.train_mean(train.score)) ** 2))
    assert np.sqrt(np.mean((preds - y) ** 2)) < 0.7 * mean_rmse
    assert baselines.train_mean([1.0, 2.0, 6.0]) == 3.0


def test_the_evaluation_report_scores_the_model_beside_both_baselines(rows):
    labeled = rows.assign(label=rows.score)
    train, val, test = splits(labeled)
    preds = test.label.to_numpy() + 0.1
    report, preds_by_key = regression.evaluation(None, labeled, train, val, test, preds, 0.01, seed=0)
    assert report["rmse"] == pytest.approx(0.1) and report["pearson"] == pytest.approx(1.0)
    assert report["baseline_mean_pearson"] == 0.0 and report["baseline_mean_rmse"] > max(report["baseline_ridge_rmse"], report["rmse"])
    assert set(preds_by_key) == {"vs_mean", "vs_ridge"} and report["n_test"] == len(test)
    assert report["gain_over_mean"] == pytest.approx(1.0)


# --- label schema and checks --------------------------------------------------------------------


def test_non_numeric_score_fails_ingest_with_one_line_naming_the_column_and_the_fix(tmp_path):
    from tiny_data import corpus_documents, path_config, write_text_files

    from components.ingest.ingest import ingest

    data = scored_sentences(40)
    data[7]["score"] = "very good"
    root = write_text_files(tmp_path / "files", corpus_documents(5), data)
    with pytest.raises(UserError) as err:
        ingest(tmp_path / "raw", path_config(root, label_column="score", task="regression"))
    line = str(err.value)
    assert "\n" not in line and "'score'" in line and "'very good'" in line and "set ingest.label_column to the numeric column" in line
    assert not (tmp_path / "raw").exists()  # nothing half written


def test_scores_are_read_as_floats_and_empty_ones_refused(tmp_path):
    from tiny_data import corpus_documents, path_config, write_text_files

    from components.ingest.ingest import ingest

    root = write_text_files(tmp_path / "files", corpus_documents(5), scored_sentences(40))
    ingest(tmp_path / "raw", path_config(root, label_column="score", task="regression"))
    from components.shared import artifacts

    labeled = pd.read_parquet(tmp_path / "raw" / artifacts.LABELED)
    assert labeled["label"].dtype == np.float64
    assert sorted(labeled["label"].round(3)) == sorted(r["score"] for r in scored_sentences(40))
    with pytest.raises(UserError, match=r"has an empty target in column 'score'"):
        regression.parse_labels(pd.Series(["1.5", ""]), None, "x.csv", "score")
    with pytest.raises(UserError, match=r"non-numeric value 'inf'"):
        regression.parse_labels(pd.Series(["1.5", "inf"]), None, "x.csv", "score")


def test_validate_checks_the_targets_are_numbers_that_vary():
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    found = regression.label_expectations(None, regression.label_profile(pd.Series([1.0, 2.0])), gxe, Column)
    assert [type(e).__name__ for e in found] == ["ExpectColumnValuesToBeInTypeList", "ExpectColumnStdevToBeBetween"]
    assert regression.label_columns(pd.DataFrame({"label": [0.5, 1.5]})) == {}


# --- config -------------------------------------------------------------------------------------


def test_the_regression_preset_names_the_task_once_and_gets_its_defaults():
    from pipelines.config import load_config

    config = load_config("demo-regression")
    assert {config.stage(s).task for s in ("ingest", "validate", "finetune", "evaluate", "register")} == {"regression"}
    assert config.finetune.select_metric == "rmse" and config.ingest.label_column == "score"
    assert config.evaluate.gate.metrics == ["pearson", "spearman", "rmse"] and config.evaluate.gate.baseline == "mean"
    assert config.register_.model_name == "lmforge-sentiment-intensity" and config.validate_.labels is None
    assert load_config("demo").finetune.task == "classification" and load_config("demo").register_.model_name == "lmforge-sentiment"


@pytest.mark.parametrize(
    "override, message",
    [
        ("finetune.task=ranking", "unknown task 'ranking': the known ones are classification, regression; set finetune.task"),
        ("finetune.select_metric=accuracy", "finetune.select_metric 'accuracy' is not a regression metric: use one of rmse, pearson, spearman"),
        ("finetune.class_weights=balanced", "set finetune.class_weights: none"),
        ("evaluate.gate.metrics=[accuracy]", "evaluate.gate.metrics ['accuracy'] are not regression metrics"),
        ("evaluate.gate.baseline=majority", "evaluate.gate.baseline 'majority' is not a regression baseline: use one of mean, ridge, control, strongest"),
        ("ingest.task=classification", "ingest.task differs from finetune.task: name the task once, in finetune.task"),
    ],
)
def test_wrong_regression_settings_fail_when_the_preset_loads(override, message):
    from pipelines.config import load_config

    with pytest.raises(UserError, match="^") as err:
        load_config("demo-regression", [override])
    assert message in str(err.value)
