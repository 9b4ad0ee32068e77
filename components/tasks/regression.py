"""The regression task: one real number per text (the demo: each sentence's human sentiment
rating, -4 to +4), mean squared error on a one-output head.

What the stages ask of the task (components/tasks/__init__.py lists it): ingest's label schema (a
finite number per row), validate's label checks (numeric, varying in train), finetune's model,
batches, loss and validation scores, evaluate's metrics (Pearson, Spearman, RMSE), baselines (the
train mean, TF-IDF + ridge regression tuned on validation), gate metrics and scatter plot,
register's MLflow task and model-card text.

Early stopping and the rate search select on validation RMSE by default (finetune.select_metric:
rmse, lower is better; pearson and spearman are the other choices): RMSE is what the MSE loss
trains, and unlike a correlation it also punishes a model that ranks well but is off in scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.shared import artifacts
from components.shared.errors import UserError
from components.tasks import sequence
from components.tasks.baselines import describe_ridge, tfidf_ridge, train_mean
from components.tasks.sequence import CONTROL_DIR, load_model, to_device  # noqa: F401 (part of the task's interface)

DESCRIPTION = "regression: one real number per text, mean squared error"
MODEL_NAME = "lmforge-sentiment-intensity"  # register.model_name when the preset names none
MLFLOW_TASK = "text-classification"  # transformers' pipeline returns the raw score for problem_type regression
USES_CLASSES = False  # finetune.label_names is not used
SELECT_METRICS = {"rmse": False, "pearson": True, "spearman": True}  # finetune.select_metric choices -> higher is better; the first is the default
GATE_METRICS = {"pearson": True, "spearman": True, "rmse": False}
PRIMARY_METRIC = "pearson"  # what a first model must beat the baseline on: the train mean scores 0 (it does not vary)
GATE_DEFAULTS = {"metrics": ["pearson", "spearman", "rmse"], "tolerance": {"pearson": 0.02, "spearman": 0.02, "rmse": 0.05}, "baseline": "mean"}
BASELINES = {"mean": ("vs_mean", "train-mean baseline", "train-mean baseline"), "ridge": ("vs_ridge", "TF-IDF + ridge baseline", "TF-IDF + ridge")}  # gate.json key, title, short title
PLOT = (artifacts.SCATTER_PNG, "predicted against true")
CARD = {
    "intended_use": (
        "Sentiment intensity of short English sentences in the style of film reviews: one real number on the human raters' scale "
        "(about -4 very negative to +4 very positive). A small research and demonstration model: compare it with the baselines below before relying on it."
    ),
    "limits": [
        "Trained on a few thousand review sentences, each rated by a few people: the ratings themselves are noisy, so expect a spread of about a point even where the model is right on average.",
        "Predictions are not clipped to the scale; far outside it, treat them as extreme, not as exact.",
        "The encoder was pretrained on a small Wikipedia sample; its vocabulary and knowledge are narrow.",
        "Inputs longer than the model's maximum length are truncated.",
        "Not for decisions about people (hiring, credit, moderation) without an evaluation on that task and population.",
    ],
    "head": "a regression head (one output, mean squared error)",
    "registered": "LMForge sentiment-intensity regressor (BERT-style encoder pretrained by LMForge)",
}


# --- label schema and its checks (ingest, validate, finetune) -----------------------------------


def parse_labels(values: pd.Series, names: list[str] | None, path: str, column: str = "label") -> pd.Series:
    """The targets as float64: every row a finite number (class names do not apply)."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = numbers.isna() | ~np.isfinite(numbers.fillna(0.0))
    if bad.any():
        value = values[bad].iloc[0]
        what = "an empty" if pd.isna(value) or str(value).strip() == "" else f"a non-numeric value {value!r}, not a finite number,"
        raise UserError(
            f"labeled file {path} has {what} target in column {column!r} ({int(bad.sum())} such rows): the regression task needs a number in every row; "
            "fix or drop the row, or set ingest.label_column to the numeric column"
        )
    return numbers


def label_columns(labeled: pd.DataFrame) -> dict[str, pd.Series]:
    return {}  # no classes: no share indicators


def label_profile(train_labels: pd.Series) -> dict:
    """No classes (so no class shares to hold validation and test to); the train targets' range."""
    values = train_labels.to_numpy(dtype=np.float64)
    return {"labels": [], "shares": {}, "range": [float(values.min()), float(values.max())] if len(values) else []}


def label_expectations(allowed: list | None, profile: dict, gxe, Column) -> list:
    """validate's checks of the target column: a number, and varying in train (a constant cannot be learned)."""
    return [
        gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=["float64", "float32", "int64", "int32"], description="every target is a number"),
        gxe.ExpectColumnStdevToBeBetween(column="label", min_value=1e-9, row_condition=Column("split") == "train", description="the train targets vary"),
    ]


def check_labels(labeled: pd.DataFrame, config) -> None:
    """finetune's check of the targets: numbers, all finite."""
    values = pd.to_numeric(labeled["label"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise UserError("the labeled set has targets that are not finite numbers: rerun ingest with finetune.task regression on a numeric label column")


# --- model, batches, loss, scores (finetune, evaluate) -----------------------------------------


def build_model(pretrained_dir: Path, config, random_init: bool = False):
    """An AutoModelForSequenceClassification with one output and problem_type regression (its own
    loss is MSE; the served pipeline returns the raw score, named "score")."""
    head = {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}
    return sequence.build_model(pretrained_dir, config, head, random_init)


def collate(rows: pd.DataFrame, pad_id: int) -> dict:
    """Pad a batch of token-id arrays to its longest member; targets as a float32 tensor when present."""
    return sequence.collate(rows, pad_id, np.float32)


def from_logits(logits) -> np.ndarray:
    """The predicted number: the head's single output."""
    return logits[:, 0].float().cpu().numpy().astype(np.float64)


def predict(model, rows: pd.DataFrame, pad_id: int, batch_size: int = 128) -> tuple[np.ndarray, float]:
    """Predicted targets and mean squared error for `rows`, in eval mode without gradients."""
    return sequence.predict(model, rows, pad_id, batch_size, collate, from_logits)


def scores(model, rows: pd.DataFrame, pad_id: int, num_labels: int | None = None) -> dict:
    """RMSE, Pearson and Spearman of `rows` and their mean squared error (the loss)."""
    preds, loss = predict(model, rows, pad_id)
    values = metric_values(rows["label"].to_numpy(dtype=np.float64), preds)
    return {**{m: float(values[m][0]) for m in SELECT_METRICS}, "loss": loss}


def describe(evaluation: dict) -> str:
    return f"validation RMSE {evaluation['rmse']:.4f} Pearson {evaluation['pearson']:.4f} Spearman {evaluation['spearman']:.4f} loss {evaluation['loss']:.4f}"


def loss_weights(train_labels: np.ndarray, num_labels: int, mode: str, device):
    """No class weights (finetune's config refuses class_weights for regression); every row weighs 1."""
    import torch

    return None, torch.ones(len(train_labels), dtype=torch.float64)


def loss_sum(logits, labels, class_w):
    """Sum over rows of the squared error, in fp32."""
    import torch.nn.functional as F

    return F.mse_loss(logits.float().view(-1), labels.float().view(-1), reduction="sum")


# --- metrics, baselines, pictures (evaluate, the gate, register) --------------------------------


def metric_values(y: np.ndarray, pred: np.ndarray, n_outputs: int | None = None) -> dict[str, np.ndarray]:
    """Pearson, Spearman and RMSE for each row of `y`/`pred` (shape [samples, n]), vectorised over
    rows. A correlation with a constant (the train-mean baseline, a collapsed model) is 0: no
    association, rather than undefined. Spearman is Pearson of the ranks, ties averaged."""
    from scipy.stats import rankdata

    y, pred = np.atleast_2d(y).astype(np.float64), np.atleast_2d(pred).astype(np.float64)
    return {
        "pearson": _pearson(y, pred),
        "spearman": _pearson(rankdata(y, axis=1), rankdata(pred, axis=1)),
        "rmse": np.sqrt(np.mean((y - pred) ** 2, axis=1)),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    denom = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(denom > 1e-12, (a * b).sum(1) / np.maximum(denom, 1e-300), 0.0)


def evaluation(model, labeled: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, preds: np.ndarray, test_loss: float, seed: int) -> tuple[dict, dict]:
    """evaluate's test report (Pearson, Spearman, RMSE beside the train-mean and TF-IDF + ridge
    baselines, trained on train and tuned on validation) and the baselines' test predictions."""
    y = test["label"].to_numpy(dtype=np.float64)
    mean_preds = np.full(len(y), train_mean(train["label"]))
    ridge_preds, ridge_params = tfidf_ridge(train["text"].tolist(), train["label"].to_numpy(), val["text"].tolist(), val["label"].to_numpy(), test["text"].tolist())
    score = lambda p: {m: float(v[0]) for m, v in metric_values(y, p).items()}  # noqa: E731
    report = {**score(preds), "test_loss": test_loss}
    report |= {f"baseline_mean_{m}": v for m, v in score(mean_preds).items()} | {f"baseline_ridge_{m}": v for m, v in score(ridge_preds).items()}
    report |= {
        "baseline_mean_value": float(mean_preds[0]) if len(y) else 0.0,
        "baseline_ridge_params": ridge_params,  # the settings chosen on validation: a dict, not a metric
        "baseline_ridge_chosen": describe_ridge(ridge_params),
        "target_range": [float(labeled["label"].min()), float(labeled["label"].max())],
        "n_test": int(len(test)),
    }
    report["gain_over_mean"] = report["pearson"] - report["baseline_mean_pearson"]
    report["gain_over_ridge"] = report["pearson"] - report["baseline_ridge_pearson"]
    return report, {"vs_mean": mean_preds, "vs_ridge": ridge_preds}


def n_outputs(report: dict) -> int:
    return 1


def plot(report: dict, y: np.ndarray, preds: np.ndarray, path: Path) -> None:
    from components.tasks.plots import plot_scatter

    plot_scatter(np.asarray(y, dtype=np.float64), np.asarray(preds, dtype=np.float64), path, report["pearson"], report["rmse"])


def score_table(report: dict, gate: dict) -> tuple[list[str], list[tuple]]:
    """evaluate's page table, as classification's (lower RMSE is better)."""
    other = lambda key, m: gate[key][m]["other"] if gate.get(key) else None  # noqa: E731
    header = ["train-mean baseline", "TF-IDF + ridge", "random-init control", "champion"]
    titles = {"pearson": "test Pearson", "spearman": "test Spearman", "rmse": "test RMSE (lower is better)"}
    rows = [(titles[m], report[m], report[f"baseline_mean_{m}"], report[f"baseline_ridge_{m}"], other("vs_control", m), other("vs_champion", m)) for m in GATE_METRICS]
    return header, rows


def baseline_note(report: dict) -> str:
    return f"TF-IDF + ridge chosen on validation: {report['baseline_ridge_chosen']}; the train mean predicts {report['baseline_mean_value']:.3f}"
