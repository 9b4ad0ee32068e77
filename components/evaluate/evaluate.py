"""evaluate: test-split accuracy, macro-F1 and confusion matrix, held-out MLM perplexity, baselines.

The majority-class baseline (the most frequent train label, predicted for every test sentence)
stands beside every score: a classifier that does not beat it has learned nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.shards import open_blocks
from components.shared.training import require_dir


class EvaluateConfig(StageConfig):
    batch_size: int = Field(128, ge=1, description="sentences or blocks per forward pass")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masking rate for held-out perplexity")
    seed: int = Field(1234, description="fixes the held-out masks so perplexities compare across runs")
    max_heldout_blocks: int = Field(512, ge=1, description="cap on held-out blocks scored (time bound)")
    threads: int | None = Field(None, ge=1, description="torch threads; None = all cores")


def evaluate(cleaned_dir: Path, pretrained_dir: Path, classifier_dir: Path, out_dir: Path, config: EvaluateConfig, html_page: Path | None = None) -> dict:
    """Score the classifier and the MLM; write EVAL_REPORT, CONFUSION_PNG and EVAL_HTML (also to
    `html_page`, e.g. a KFP HTML artifact, when given); return the metrics."""
    import torch
    from sklearn.metrics import confusion_matrix, f1_score
    from transformers import AutoModelForSequenceClassification

    from components.finetune.finetune import predict

    cleaned_dir = require_dir(cleaned_dir, "cleaned data", "clean_tokenize")
    if config.threads:
        torch.set_num_threads(config.threads)
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train, test = labeled[labeled.split == "train"], labeled[labeled.split == "test"]
    if test.empty:
        raise UserError("the labeled set has no test rows: nothing to evaluate on (check the split column)")
    model = AutoModelForSequenceClassification.from_pretrained(require_dir(classifier_dir, "classifier", "finetune"))
    preds, test_loss = predict(model, test, model.config.pad_token_id, config.batch_size)
    y = test["label"].to_numpy()
    labels = sorted(labeled["label"].unique().tolist())
    majority = int(train["label"].mode().iloc[0])
    cm = confusion_matrix(y, preds, labels=labels)
    report = {
        "accuracy": float((preds == y).mean()),
        "macro_f1": float(f1_score(y, preds, labels=labels, average="macro", zero_division=0)),
        "test_loss": test_loss,
        "baseline_majority_accuracy": float((y == majority).mean()),
        "baseline_majority_macro_f1": float(f1_score(y, np.full_like(y, majority), labels=labels, average="macro", zero_division=0)),
        "perplexity": mlm_perplexity(require_dir(pretrained_dir, "pretrained model", "pretrain"), cleaned_dir, config),
        "labels": labels,
        "label_names": [model.config.id2label.get(i, str(i)) for i in labels],
        "confusion_matrix": cm.tolist(),
        "n_test": int(len(test)),
    }
    report["gain_over_majority"] = report["accuracy"] - report["baseline_majority_accuracy"]
    with artifacts.staged_dir(out_dir) as tmp:
        artifacts.write_json(tmp / artifacts.EVAL_REPORT, report)
        plot_confusion(cm, report["label_names"], tmp / artifacts.CONFUSION_PNG, report["accuracy"])
        page = render_html(report, tmp / artifacts.CONFUSION_PNG)
        (tmp / artifacts.EVAL_HTML).write_text(page)
    if html_page:
        Path(html_page).write_text(page)
    return {f"eval/{k}": v for k, v in report.items() if isinstance(v, (int, float))}


def mlm_perplexity(pretrained_dir: Path, cleaned_dir: Path, config: EvaluateConfig) -> float:
    """exp(mean cross-entropy over masked positions) on held-out blocks, with seeded masks."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    heldout = open_blocks(cleaned_dir / artifacts.BLOCKS_HELDOUT)
    blocks = heldout.take(np.arange(min(len(heldout), config.max_heldout_blocks))).astype(np.int64)
    model = AutoModelForMaskedLM.from_pretrained(pretrained_dir).eval()
    collator = DataCollatorForLanguageModeling(AutoTokenizer.from_pretrained(pretrained_dir), mlm_probability=config.mlm_probability)
    torch.manual_seed(config.seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), config.batch_size):
            inputs, labels = collator.torch_mask_tokens(torch.from_numpy(blocks[start : start + config.batch_size]))
            n = int((labels != -100).sum())
            if n:
                total += model(input_ids=inputs, labels=labels).loss.item() * n
                count += n
    if count == 0:
        raise UserError("no held-out token was masked, so perplexity is undefined: raise evaluate.mlm_probability or max_heldout_blocks")
    return float(math.exp(total / count))


def render_html(report: dict, confusion_png: Path) -> str:
    """A one-file page for the KFP UI: the scores beside their baseline, the confusion matrix inline."""
    import base64

    rows = [
        ("test accuracy", report["accuracy"], report["baseline_majority_accuracy"]),
        ("test macro-F1", report["macro_f1"], report["baseline_majority_macro_f1"]),
    ]
    table = "".join(f"<tr><td>{name}</td><td>{model:.4f}</td><td>{base:.4f}</td></tr>" for name, model, base in rows)
    image = base64.b64encode(Path(confusion_png).read_bytes()).decode()
    return (
        "<html><body style='font-family:sans-serif'><h2>LMForge evaluation</h2>"
        f"<table border='1' cellpadding='4'><tr><th>metric</th><th>model</th><th>majority baseline</th></tr>{table}</table>"
        f"<p>held-out masked-LM perplexity: {report['perplexity']:.1f} &middot; test sentences: {report['n_test']}</p>"
        f"<img alt='confusion matrix' src='data:image/png;base64,{image}'/></body></html>\n"
    )


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
