"""evaluate: test-split accuracy, macro-F1 and confusion matrix, held-out perplexity, baselines.

Two baselines (components/evaluate/baselines.py) stand beside every score: the majority class (a
classifier that does not beat it has learned nothing) and TF-IDF + logistic regression, tuned on
the validation split (a pretrained encoder that does not beat it has not yet earned its cost).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.shards import open_blocks
from components.shared.training import require_dir
from components.evaluate.baselines import describe_tfidf, majority_label, tfidf_logreg
from components.evaluate.gate import GateConfig, render_markdown
from components.evaluate.gate import plot as plot_gate


class EvaluateConfig(StageConfig):
    batch_size: int = Field(128, ge=1, description="sentences or blocks per forward pass")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masking rate for held-out perplexity")
    seed: int = Field(1234, description="fixes the held-out masks so perplexities compare across runs")
    max_heldout_blocks: int = Field(512, ge=1, description="cap on held-out blocks scored (time bound)")
    threads: int | None = Field(None, ge=1, description="torch threads; None = all cores")
    gate: GateConfig = Field(default_factory=GateConfig, description="rules a new model must meet against the current champion")


def evaluate(
    cleaned_dir: Path, pretrained_dir: Path, classifier_dir: Path, out_dir: Path, config: EvaluateConfig, html_page: Path | None = None,
    model_name: str | None = None, champion_alias: str = "champion",
) -> dict:
    """Score the classifier and the MLM, and gate it against `model_name@champion_alias` (no
    model name: no registry, gate against the baseline only); write EVAL_REPORT, CONFUSION_PNG, EVAL_HTML (also
    to `html_page`, e.g. a KFP HTML artifact) and the gate report; return the metrics."""
    import torch
    from sklearn.metrics import confusion_matrix, f1_score
    from transformers import AutoModelForSequenceClassification

    from components.tasks.classification import predict

    cleaned_dir = require_dir(cleaned_dir, "cleaned data", "clean_tokenize")
    if config.threads:
        torch.set_num_threads(config.threads)
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train, val, test = (labeled[labeled.split == s] for s in ("train", "validation", "test"))
    if test.empty or val.empty:
        raise UserError(f"the labeled set has {len(val)} validation and {len(test)} test rows: both splits need rows (check the split column)")
    model = AutoModelForSequenceClassification.from_pretrained(require_dir(classifier_dir, "classifier", "finetune"))
    preds, test_loss = predict(model, test, model.config.pad_token_id, config.batch_size)
    y = test["label"].to_numpy()
    labels = sorted(labeled["label"].unique().tolist())
    majority_preds = np.full_like(y, majority_label(train["label"]))
    tfidf_preds, tfidf_params = tfidf_logreg(train["text"].tolist(), train["label"].to_numpy(), val["text"].tolist(), val["label"].to_numpy(), test["text"].tolist(), config.seed)
    macro_f1 = lambda p: float(f1_score(y, p, labels=labels, average="macro", zero_division=0))  # noqa: E731
    cm = confusion_matrix(y, preds, labels=labels)
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
        "perplexity": heldout_perplexity(require_dir(pretrained_dir, "pretrained model", "pretrain"), cleaned_dir, config),
        "labels": labels,
        "label_names": [model.config.id2label.get(i, str(i)) for i in labels],
        "confusion_matrix": cm.tolist(),
        "n_test": int(len(test)),
    }
    report["gain_over_majority"] = report["accuracy"] - report["baseline_majority_accuracy"]
    report["gain_over_tfidf"] = report["accuracy"] - report["baseline_tfidf_accuracy"]
    baselines = {"vs_majority": majority_preds, "vs_tfidf": tfidf_preds}
    gate = run_gate(config, model_name, champion_alias, test, y, preds, baselines, Path(classifier_dir), len(labels))
    report["gate_passed"] = int(gate["passed"])
    if gate.get("vs_control"):
        report["control_accuracy"] = gate["vs_control"]["accuracy"]["other"]
        report["pretraining_gain"] = gate["vs_control"]["accuracy"]["diff"]
    if gate.get("vs_champion"):
        report["champion_accuracy"] = gate["vs_champion"]["accuracy"]["other"]
        report["gain_over_champion"] = gate["vs_champion"]["accuracy"]["diff"]
    with artifacts.staged_dir(out_dir) as tmp:
        artifacts.write_json(tmp / artifacts.EVAL_REPORT, report)
        artifacts.write_json(tmp / artifacts.GATE_REPORT, gate)
        plot_gate(gate, tmp / artifacts.GATE_PNG)
        (tmp / artifacts.GATE_MD).write_text(render_markdown(gate, artifacts.GATE_PNG))
        plot_confusion(cm, report["label_names"], tmp / artifacts.CONFUSION_PNG, report["accuracy"])
        page = render_html(report, gate, tmp / artifacts.CONFUSION_PNG, tmp / artifacts.GATE_PNG)
        (tmp / artifacts.EVAL_HTML).write_text(page)
    if html_page:
        Path(html_page).write_text(page)
    print(f"[evaluate] {gate['summary']}", flush=True)
    return {f"eval/{k}": v for k, v in report.items() if isinstance(v, (int, float))}


def run_gate(config: EvaluateConfig, model_name: str | None, champion_alias: str, test: pd.DataFrame, y, preds, baselines: dict, classifier_dir: Path, n_classes: int) -> dict:
    """Compare with the champion, the random-init control and the baselines (`baselines`: gate
    key -> test predictions); decide."""
    from transformers import AutoModelForSequenceClassification

    from components.evaluate.gate import champion_predictions, choose_baseline, compare, decide
    from components.tasks.classification import CONTROL_DIR, predict

    rules = config.gate
    gate = {"rules": rules.model_dump(), "confidence": rules.confidence, "n_test": int(len(y)), "champion": None, "vs_champion": None, "vs_control": None}
    gate |= {key: compare(y, preds, other, n_classes, rules) for key, other in baselines.items()}
    if (classifier_dir / CONTROL_DIR).is_dir():
        control = AutoModelForSequenceClassification.from_pretrained(classifier_dir / CONTROL_DIR)
        gate["vs_control"] = compare(y, preds, predict(control, test, control.config.pad_token_id, config.batch_size)[0], n_classes, rules)
    found = champion_predictions(model_name, champion_alias, test["text"].tolist(), config.batch_size) if model_name else None
    if found:
        gate["champion"], champion_preds = found
        gate["vs_champion"] = compare(y, preds, champion_preds, n_classes, rules)
    gate["baseline"] = None if found else choose_baseline(rules, gate)  # with a champion, the champion decides
    return {**gate, **decide(rules, gate["champion"], gate["vs_champion"], gate["baseline"])}


def heldout_perplexity(pretrained_dir: Path, cleaned_dir: Path, config: EvaluateConfig) -> float:
    """exp(mean held-out loss per target) of the objective the model was pretrained with (masked LM:
    over seeded masked positions; causal LM: every next token), on the first held-out blocks."""
    from components import objectives

    heldout = open_blocks(cleaned_dir / artifacts.BLOCKS_HELDOUT)
    blocks = heldout.take(np.arange(min(len(heldout), config.max_heldout_blocks))).astype(np.int64)
    objective = objectives.of_pretrained(pretrained_dir)
    return objective.heldout_perplexity(pretrained_dir, blocks, config.batch_size, config.mlm_probability, config.seed)


def render_html(report: dict, gate: dict, confusion_png: Path, gate_png: Path) -> str:
    """A one-file page for the KFP UI: the gate's decision, the scores beside their baselines, the
    pictures inline."""
    import base64
    import html

    rows = [
        ("test accuracy", report["accuracy"], report["baseline_majority_accuracy"], report["baseline_tfidf_accuracy"], report.get("control_accuracy"), report.get("champion_accuracy")),
        ("test macro-F1", report["macro_f1"], report["baseline_majority_macro_f1"], report["baseline_tfidf_macro_f1"], _other(gate, "vs_control"), _other(gate, "vs_champion")),
    ]
    cell = lambda v: f"{v:.4f}" if v is not None else "&ndash;"  # noqa: E731
    table = "".join(f"<tr><td>{name}</td>{''.join(f'<td>{cell(v)}</td>' for v in values)}</tr>" for name, *values in rows)
    images = [base64.b64encode(Path(p).read_bytes()).decode() for p in (gate_png, confusion_png)]
    colour = "green" if gate["passed"] else "firebrick"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in gate["reasons"])
    return (
        "<html><body style='font-family:sans-serif'><h2>LMForge evaluation</h2>"
        f"<p style='color:{colour}'><b>{html.escape(gate['summary'])}</b></p><ul>{reasons}</ul>"
        "<table border='1' cellpadding='4'><tr><th>metric</th><th>model</th><th>majority baseline</th><th>TF-IDF + LR</th><th>random-init control</th><th>champion</th></tr>"
        f"{table}</table>"
        f"<p>held-out masked-LM perplexity: {report['perplexity']:.1f} &middot; test sentences: {report['n_test']} &middot; "
        f"TF-IDF + LR chosen on validation: {html.escape(report['baseline_tfidf_chosen'])}</p>"
        f"<img alt='gate' src='data:image/png;base64,{images[0]}'/><br/>"
        f"<img alt='confusion matrix' src='data:image/png;base64,{images[1]}'/></body></html>\n"
    )


def _other(gate: dict, key: str):
    return gate[key]["macro_f1"]["other"] if gate.get(key) else None


def plot_confusion(cm: np.ndarray, labels: list, path: Path, accuracy: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=100)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted", ylabel="true", title=f"test confusion matrix (acc {accuracy:.3f})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
