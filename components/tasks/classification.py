"""The sequence-classification task: one class per text, cross-entropy on a classification head.

Everything the stages ask of the task (components/tasks/__init__.py lists it): ingest's label
schema (integer ids or class names), validate's label checks (known ids, every class in train,
class shares), finetune's model, batches, loss and validation scores, evaluate's metrics,
baselines (majority class, TF-IDF + logistic regression), gate metrics and confusion matrix,
register's MLflow task and model-card text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.shared import artifacts
from components.shared.errors import UserError
from components.tasks import sequence
from components.tasks.baselines import describe_tfidf, majority_label, tfidf_logreg
from components.tasks.sequence import CONTROL_DIR, load_model, to_device  # noqa: F401 (part of the task's interface)

DESCRIPTION = "sequence classification: one class per text, cross-entropy"
MODEL_NAME = "lmforge-sentiment"  # register.model_name when the preset names none
MLFLOW_TASK = "text-classification"  # mlflow.transformers' pipeline task of the registered model
USES_CLASSES = True  # finetune.label_names names the classes (ingest maps names, validate allows their ids)
SELECT_METRICS = {"accuracy": True, "macro_f1": True}  # finetune.select_metric choices -> higher is better
GATE_METRICS = {"accuracy": True, "macro_f1": True}  # what the gate can compare -> higher is better
PRIMARY_METRIC = "accuracy"  # what a first model must beat the baseline on (evaluate.gate.min_gain_over_baseline)
GATE_DEFAULTS = {"metrics": ["accuracy", "macro_f1"], "tolerance": {"accuracy": 0.01, "macro_f1": 0.01}, "baseline": "majority"}
BASELINES = {"majority": ("vs_majority", "majority baseline", "majority baseline"), "tfidf": ("vs_tfidf", "TF-IDF + LR baseline", "TF-IDF + LR")}  # gate.json key, title, short title
PLOT = (artifacts.CONFUSION_PNG, "confusion matrix")  # evaluate's picture of the test predictions: file, alt text
CARD = {
    "intended_use": (
        "Binary sentiment (negative/positive) of short English sentences in the style of film reviews. "
        "A small research and demonstration model: compare it with the baselines below before relying on it."
    ),
    "limits": [
        "Trained on a few thousand review sentences: expect errors on sarcasm, negation across clauses, domains other than film reviews, and text in other languages.",
        "The encoder was pretrained on a small Wikipedia sample; its vocabulary and knowledge are narrow.",
        "Inputs longer than the model's maximum length are truncated.",
        "Not for decisions about people (hiring, credit, moderation) without an evaluation on that task and population.",
    ],
    "head": "a classification head",
    "registered": "LMForge text classifier (BERT-style encoder pretrained by LMForge)",
}


# --- label schema and its checks (ingest, validate, finetune) -----------------------------------


def parse_labels(values: pd.Series, names: list[str] | None, path: str, column: str = "label") -> pd.Series:
    """Class ids (int64) from integer labels or from class names (`names`, index = id)."""
    # Plain str per cell: an Arrow-backed column keeps None as NA through astype(str), and names must sort
    as_text = pd.Series(["" if _missing(v) else str(v).strip() for v in values], index=values.index, dtype=object)
    named = as_text.isin(names or [])
    if names and named.all():
        return as_text.map({n: i for i, n in enumerate(names)}).astype("int64")
    if named.any():  # names in the file, and something else: that one is what to fix
        bad = values[~named].iloc[0]
        raise UserError(f"labeled file {path} has a label {bad!r} that is neither an integer id nor one of finetune.label_names {names}: add it to finetune.label_names or fix the row")
    numbers = pd.to_numeric(values, errors="coerce")
    bad_rows = numbers.isna() | (numbers != numbers.round())  # 0.5 must not be cut down to 0
    if bad_rows.any():
        bad = values[bad_rows].iloc[0]
        if not names and pd.notna(pd.to_numeric(pd.Series([bad]), errors="coerce")[0]):
            raise UserError(f"labeled file {path} has a non-integer label {bad!r}: labels are integer ids (0, 1, ...) or class names")
        if not names:
            found = sorted(as_text[bad_rows].unique().tolist())
            shown = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "")
            raise UserError(f"labeled file {path} has a non-integer label {bad!r}: for string labels, name the classes once in finetune.label_names (index = id), e.g. [{shown}]")
        raise UserError(f"labeled file {path} has a label {bad!r} that is neither an integer id nor one of finetune.label_names {names}: add it to finetune.label_names or fix the row")
    numbers = numbers.astype("int64")
    if names and (numbers.min() < 0 or numbers.max() >= len(names)):
        raise UserError(f"labeled file {path} has label ids from {numbers.min()} to {numbers.max()} but finetune.label_names names {len(names)} classes (ids 0-{len(names) - 1}): name every class")
    return numbers


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def share_column(label) -> str:
    """The 0/1 indicator column whose mean is the share of class `label` (GX checks a mean)."""
    return f"label={label}"


def label_columns(labeled: pd.DataFrame) -> dict[str, pd.Series]:
    """The columns validate adds for the label checks: one share indicator per class."""
    return {share_column(c): (labeled["label"] == c).astype("int64") for c in sorted(labeled["label"].dropna().unique())}


def label_profile(train_labels: pd.Series) -> dict:
    """The classes of the train split and each one's share (validation and test are held to them)."""
    shares = train_labels.value_counts(normalize=True).sort_index()
    return {"labels": [int(c) for c in shares.index], "shares": {int(c): float(v) for c, v in shares.items()}}


def label_expectations(allowed: list | None, profile: dict, gxe, Column) -> list:
    """validate's checks of the label column: a known class id, every class with train rows."""
    allowed = list(allowed) if allowed is not None else profile["labels"]
    return [
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=allowed, description="every label is a known class id"),
        # Every class has train rows (a class seen only in validation/test cannot be learned).
        gxe.ExpectColumnDistinctValuesToContainSet(column="label", value_set=allowed, row_condition=Column("split") == "train", description="every class has train rows"),
    ]


def check_labels(labeled: pd.DataFrame, config) -> None:
    """finetune's check of the labeled rows against its config: every id has a name."""
    num_labels = len(config.label_names)
    if labeled.label.max() >= num_labels or labeled.label.min() < 0:
        raise UserError(f"labels run from {labeled.label.min()} to {labeled.label.max()} but finetune.label_names has {num_labels} names: name every class")


# --- model, batches, loss, scores (finetune, evaluate) -----------------------------------------


def build_model(pretrained_dir: Path, config, random_init: bool = False):
    """A BertForSequenceClassification (any class AutoModelForSequenceClassification loads back)
    with one logit per name in `config.label_names`."""
    names = config.label_names
    head = {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    return sequence.build_model(pretrained_dir, config, head, random_init)


def collate(rows: pd.DataFrame, pad_id: int) -> dict:
    """Pad a batch of token-id arrays to its longest member; class ids as an int64 tensor when present."""
    return sequence.collate(rows, pad_id, np.int64)


def from_logits(logits) -> np.ndarray:
    """Class predictions: the largest logit."""
    return logits.argmax(-1).cpu().numpy()


def predict(model, rows: pd.DataFrame, pad_id: int, batch_size: int = 128) -> tuple[np.ndarray, float]:
    """Class predictions and mean (unweighted) cross-entropy for `rows`, in eval mode without gradients."""
    return sequence.predict(model, rows, pad_id, batch_size, collate, from_logits)


def accuracy(model, rows: pd.DataFrame, pad_id: int) -> tuple[float, float]:
    preds, loss = predict(model, rows, pad_id)
    return float((preds == rows["label"].to_numpy()).mean()), loss


def scores(model, rows: pd.DataFrame, pad_id: int, num_labels: int | None = None) -> dict:
    """Accuracy, macro-F1 over all `num_labels` classes (default: the model's; a class never
    predicted nor present scores 0, as in evaluate) and the mean cross-entropy of `rows`."""
    from sklearn.metrics import f1_score

    num_labels = num_labels or model.config.num_labels
    preds, loss = predict(model, rows, pad_id)
    y = rows["label"].to_numpy()
    f1 = f1_score(y, preds, labels=list(range(num_labels)), average="macro", zero_division=0)
    return {"accuracy": float((preds == y).mean()), "macro_f1": float(f1), "loss": loss}


def describe(evaluation: dict) -> str:
    """The validation scores in finetune's progress line."""
    return f"validation accuracy {evaluation['accuracy']:.4f} macro-F1 {evaluation['macro_f1']:.4f} loss {evaluation['loss']:.4f}"


def class_weights(labels: np.ndarray, num_labels: int, mode: str) -> np.ndarray | None:
    """Per-class loss weights from the train labels: None for "none"; for "balanced", scikit-learn's
    n_rows / (n_classes * rows of the class) over the classes present (a class without train rows
    gets 0: no row carries it)."""
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_labels)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def loss_weights(train_labels: np.ndarray, num_labels: int, mode: str, device):
    """(per-class loss weights as float32 on `device` or None, each train row's weight as float64
    on the CPU): a global batch's sum of row weights normalises its loss."""
    import torch

    weights = class_weights(train_labels, num_labels, mode)
    labels = torch.from_numpy(np.asarray(train_labels).astype(np.int64, copy=True))
    class_w = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    row_w = torch.ones(len(labels), dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)[labels]
    return class_w, row_w


def loss_sum(logits, labels, class_w):
    """Sum over rows of w[y] * cross-entropy (w = 1 without class weights), in fp32."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), labels, weight=class_w, reduction="sum")


# --- metrics, baselines, pictures (evaluate, the gate, register) --------------------------------


def metric_values(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 for each row of `y`/`pred` (shape [samples, n]), vectorised over rows.

    Macro-F1 as scikit-learn computes it with zero_division=0: a class with no true and no predicted
    member scores 0."""
    y, pred = np.atleast_2d(y), np.atleast_2d(pred)
    f1 = []
    for c in range(n_classes):
        tp = ((y == c) & (pred == c)).sum(1)
        fp = ((y != c) & (pred == c)).sum(1)
        fn = ((y == c) & (pred != c)).sum(1)
        denom = 2 * tp + fp + fn
        f1.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return {"accuracy": (y == pred).mean(1), "macro_f1": np.mean(f1, axis=0)}


def evaluation(model, labeled: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, preds: np.ndarray, test_loss: float, seed: int) -> tuple[dict, dict]:
    """evaluate's test report (accuracy, macro-F1 and the confusion matrix beside both baselines,
    trained on train and tuned on validation) and the baselines' test predictions by gate key."""
    from sklearn.metrics import confusion_matrix, f1_score

    y = test["label"].to_numpy()
    labels = sorted(labeled["label"].unique().tolist())
    majority_preds = np.full_like(y, majority_label(train["label"]))
    tfidf_preds, tfidf_params = tfidf_logreg(train["text"].tolist(), train["label"].to_numpy(), val["text"].tolist(), val["label"].to_numpy(), test["text"].tolist(), seed)
    macro_f1 = lambda p: float(f1_score(y, p, labels=labels, average="macro", zero_division=0))  # noqa: E731
    report = {
        "accuracy": float((preds == y).mean()),
        "macro_f1": macro_f1(preds),
        "test_loss": test_loss,
        "baseline_majority_accuracy": float((majority_preds == y).mean()),
        "baseline_majority_macro_f1": macro_f1(majority_preds),
        "baseline_tfidf_accuracy": float((tfidf_preds == y).mean()),
        "baseline_tfidf_macro_f1": macro_f1(tfidf_preds),
        "baseline_tfidf_params": tfidf_params,  # the settings chosen on validation: a dict, not a metric
        "baseline_tfidf_chosen": describe_tfidf(tfidf_params),  # the same in one line, for the page and the model card
        "labels": labels,
        "label_names": [model.config.id2label.get(i, str(i)) for i in labels],
        "confusion_matrix": confusion_matrix(y, preds, labels=labels).tolist(),
        "n_test": int(len(test)),
    }
    report["gain_over_majority"] = report["accuracy"] - report["baseline_majority_accuracy"]
    report["gain_over_tfidf"] = report["accuracy"] - report["baseline_tfidf_accuracy"]
    return report, {"vs_majority": majority_preds, "vs_tfidf": tfidf_preds}


def n_outputs(report: dict) -> int:
    """What the gate's metric_values needs beyond y and pred: the number of classes."""
    return len(report["labels"])


def plot(report: dict, y: np.ndarray, preds: np.ndarray, path: Path) -> None:
    from components.tasks.plots import plot_confusion

    plot_confusion(np.asarray(report["confusion_matrix"]), report["label_names"], path, report["accuracy"])


def score_table(report: dict, gate: dict) -> tuple[list[str], list[tuple]]:
    """evaluate's page table: (column titles after the metric and the model's value, rows of the
    metric's title and the values; None where a column has none). The card takes the titles."""
    other = lambda key, m: gate[key][m]["other"] if gate.get(key) else None  # noqa: E731
    header = ["majority baseline", "TF-IDF + LR", "random-init control", "champion"]
    rows = [
        ("test accuracy", report["accuracy"], report["baseline_majority_accuracy"], report["baseline_tfidf_accuracy"], report.get("control_accuracy"), report.get("champion_accuracy")),
        ("test macro-F1", report["macro_f1"], report["baseline_majority_macro_f1"], report["baseline_tfidf_macro_f1"], other("vs_control", "macro_f1"), other("vs_champion", "macro_f1")),
    ]
    return header, rows


def baseline_note(report: dict) -> str:
    """One line on how the strong baseline was chosen (page and card)."""
    return f"TF-IDF + LR chosen on validation: {report['baseline_tfidf_chosen']}" if report.get("baseline_tfidf_chosen") else ""
