"""The promotion gate: the new model against the current champion on the same test split.

Differences come with paired bootstrap intervals (the same resampled sentences score both models,
so the interval is about the models, not about which sentences happened to be drawn). The decision
uses the point differences and the preset's rules; the intervals stand beside them in the report so
a reader sees how much of a "win" is noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from components.shared.config import StrictModel
from components.shared.errors import UserError
from components.shared.lineage import DATA_REV_TAG

Metric = Literal["accuracy", "macro_f1"]
Baseline = Literal["majority", "tfidf", "control", "strongest"]
# gate.json key and the name people read, per baseline, in the order `strongest` prefers on ties
BASELINES = {"majority": ("vs_majority", "majority baseline"), "tfidf": ("vs_tfidf", "TF-IDF + LR baseline"), "control": ("vs_control", "random-init control")}


class GateConfig(StrictModel):
    metrics: list[Metric] = Field(["accuracy", "macro_f1"], min_length=1, description="gated metrics; the first is the one that must improve")
    min_improvement: float = Field(0.0, description="the first metric must beat the champion by at least this (point estimate; 0 = not worse)")
    tolerance: dict[str, float] = Field({"accuracy": 0.01, "macro_f1": 0.01}, description="no gated metric may fall more than this below the champion's")
    min_gain_over_baseline: float = Field(0.02, description="with no champion yet: accuracy must beat `baseline` by this")
    baseline: Baseline = Field(
        "majority", description="what a first model (no champion yet) is judged against: majority, tfidf (TF-IDF + logistic regression), "
        "control (the random-init control; needs finetune.control) or strongest (whichever of them scores the highest test accuracy in this run)",
    )
    bootstrap_samples: int = Field(1000, ge=100, description="paired bootstrap resamples of the test split")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided level of the reported intervals")
    seed: int = Field(2024, description="fixes the bootstrap resamples: the same models give the same report")

    @model_validator(mode="after")
    def _tolerances_name_gated_metrics(self):
        if "tolerance" not in self.model_fields_set:  # the defaults follow the gated metrics
            object.__setattr__(self, "tolerance", {m: t for m, t in self.tolerance.items() if m in self.metrics})
        unknown = set(self.tolerance) - set(self.metrics)
        if unknown:
            raise ValueError(f"evaluate.gate.tolerance names {sorted(unknown)}, which are not in evaluate.gate.metrics {self.metrics}: gate them or drop the tolerance")
        return self


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


def compare(y: np.ndarray, new: np.ndarray, other: np.ndarray, n_classes: int, config: GateConfig) -> dict:
    """Point scores of both models and the paired-bootstrap interval of (new - other), per metric."""
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, len(y), size=(config.bootstrap_samples, len(y)))
    point_new, point_other = metric_values(y, new, n_classes), metric_values(y, other, n_classes)
    boot_new, boot_other = metric_values(y[idx], new[idx], n_classes), metric_values(y[idx], other[idx], n_classes)
    tail = (1 - config.confidence) / 2 * 100
    out = {}
    for m in ("accuracy", "macro_f1"):
        diffs = boot_new[m] - boot_other[m]
        low, high = np.percentile(diffs, [tail, 100 - tail])
        new_v, other_v = float(point_new[m][0]), float(point_other[m][0])
        out[m] = {"new": new_v, "other": other_v, "diff": new_v - other_v, "low": float(low), "high": float(high)}
    return out


def choose_baseline(config: GateConfig, comparisons: dict) -> dict:
    """The baseline a first model is judged against: `config.baseline`, or for `strongest` the
    available one with the highest test accuracy. `comparisons` maps gate.json keys (vs_majority,
    vs_tfidf, vs_control) to `compare` results or None. Returns {'key', 'title', 'accuracy', 'gain', 'why'}."""
    found = {name: comparisons[key] for name, (key, _) in BASELINES.items() if comparisons.get(key)}
    if config.baseline == "strongest":
        name = max(found, key=lambda n: found[n]["accuracy"]["other"])  # the first of BASELINES on ties
    elif config.baseline not in found:  # only the control is optional
        raise UserError("evaluate.gate.baseline is control but finetune trained no control: set finetune.control: true or choose another evaluate.gate.baseline")
    else:
        name = config.baseline
    title, acc = BASELINES[name][1], found[name]["accuracy"]
    why = f"the strongest baseline, the {title} (test accuracy {acc['other']:.4f})" if config.baseline == "strongest" else f"the {title}"
    return {"key": name, "title": title, "accuracy": acc["other"], "gain": acc["diff"], "why": why}


def decide(config: GateConfig, champion: dict | None, vs_champion: dict | None, baseline: dict) -> dict:
    """Apply the preset's rules; `baseline` (from choose_baseline) decides when there is no
    champion yet. Returns {'passed', 'reasons', 'summary'}; reasons say what failed."""
    reasons = []
    if vs_champion is None:
        gain, title = baseline["gain"], baseline["title"]
        if gain < config.min_gain_over_baseline:
            reasons.append(f"accuracy beats the {title} by {gain:+.4f}, less than the required {config.min_gain_over_baseline:+.4f}")
        against = f"no champion yet: judged against {baseline['why']}"
        detail = f"accuracy {gain:+.4f} over the {title}"
    else:
        first = config.metrics[0]
        if vs_champion[first]["diff"] < config.min_improvement:
            reasons.append(f"{first} changed by {vs_champion[first]['diff']:+.4f} against the champion, less than the required {config.min_improvement:+.4f}")
        for m in config.metrics:
            tol = config.tolerance.get(m, 0.0)
            if vs_champion[m]["diff"] < -tol:
                reasons.append(f"{m} fell {-vs_champion[m]['diff']:.4f} below the champion (tolerance {tol:.4f})")
        against = f"against champion version {champion['version']}"
        detail = ", ".join(f"{m} {vs_champion[m]['diff']:+.4f} [{vs_champion[m]['low']:+.4f}, {vs_champion[m]['high']:+.4f}]" for m in config.metrics)
    passed = not reasons
    summary = f"gate {'passed' if passed else 'failed'} {against}: {detail}"
    return {"passed": passed, "reasons": reasons, "summary": summary}


def champion_predictions(model_name: str, alias: str, texts: list[str], batch_size: int) -> tuple[dict, np.ndarray] | None:
    """The current holder of `alias` and its predictions on `texts` (see `predict_registered`).
    None when the model or the alias does not exist yet, or its holder is an incomplete version."""
    from components.shared import registry, tracking

    mlflow = tracking.connect()
    client = mlflow.MlflowClient()
    with tracking.reported_errors():
        try:
            version = client.get_model_version_by_alias(model_name, alias)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise
        if not registry.is_complete(version.tags):
            return None  # a registration cut short is nobody's champion
        parts = mlflow.transformers.load_model(f"models:/{model_name}/{version.version}", return_type="components")
    info = {"version": str(version.version), "run_id": version.run_id, "data_rev": version.tags.get(DATA_REV_TAG, "")}
    return info, predict_registered(parts["model"], parts["tokenizer"], texts, batch_size)


def predict_registered(model, tokenizer, texts: list[str], batch_size: int) -> np.ndarray:
    """A registered model's class predictions on `texts`, tokenized with its own tokenizer (a
    champion trained on another data revision has another vocabulary), then through the task's
    `predict`, the new model's own path: the same collate, batching, eval mode and device."""
    import pandas as pd

    from components.tasks.classification import predict

    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    limit = min(getattr(model.config, "max_position_embeddings", 512), 512)
    ids = tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]
    # predict also reports a loss, which needs labels: class 0 exists in every label space; unused.
    rows = pd.DataFrame({"input_ids": ids, "label": np.zeros(len(ids), dtype=np.int64)})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
    return predict(model, rows, pad_id, batch_size)[0]


def render_markdown(gate: dict, picture: str) -> str:
    """The gate report people read: decision first, then every comparison with its interval."""
    conf = int(round(gate["confidence"] * 100))
    lines = [f"# Promotion gate: {'PASSED' if gate['passed'] else 'FAILED'}", "", gate["summary"], ""]
    lines += [f"- {r}" for r in gate["reasons"]] + ([""] if gate["reasons"] else [])
    rules = gate["rules"]
    lines += [f"Rules: metrics {', '.join(rules['metrics'])}; first must improve by >= {rules['min_improvement']}; tolerances {rules['tolerance']}; "
              f"without a champion, accuracy over the baseline (evaluate.gate.baseline: {rules.get('baseline', 'majority')}) >= {rules['min_gain_over_baseline']}.", ""]
    lines += [f"| comparison | metric | new | other | difference | {conf}% interval |", "|---|---|---|---|---|---|"]
    for title, block in _comparisons(gate):
        for m, v in block.items():
            lines.append(f"| {title} | {m} | {v['new']:.4f} | {v['other']:.4f} | {v['diff']:+.4f} | [{v['low']:+.4f}, {v['high']:+.4f}] |")
    lines += ["", f"Paired bootstrap over {gate['n_test']} test sentences, {gate['rules']['bootstrap_samples']} resamples.", "", f"![gate]({picture})", ""]
    return "\n".join(lines)


def plot(gate: dict, path: Path) -> None:
    """Differences with their intervals, one row per comparison and metric; tolerance marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{title}: {m}", v) for title, block in _comparisons(gate) for m, v in block.items()]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.4), dpi=100)
    for i, (_, v) in enumerate(rows):
        ax.errorbar(v["diff"], i, xerr=[[v["diff"] - v["low"]], [v["high"] - v["diff"]]], fmt="o", capsize=4, color="tab:green" if v["low"] > 0 else "tab:blue")
    ax.axvline(0, color="black", lw=1)
    for tol in set(gate["rules"]["tolerance"].values()):
        ax.axvline(-tol, color="tab:red", ls="--", lw=1)
    ax.set(yticks=range(len(rows)), yticklabels=[r[0] for r in rows], xlabel=f"difference (new - other), {int(gate['confidence'] * 100)}% bootstrap interval")
    ax.set_title(f"gate {'passed' if gate['passed'] else 'failed'}", color="tab:green" if gate["passed"] else "tab:red")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _comparisons(gate: dict):
    if gate.get("vs_champion"):
        yield f"vs champion v{gate['champion']['version']}", gate["vs_champion"]
    if gate.get("vs_control"):
        yield "vs random-init control", gate["vs_control"]
    if gate.get("vs_tfidf"):
        yield "vs TF-IDF + LR", gate["vs_tfidf"]
    yield "vs majority baseline", gate["vs_majority"]
