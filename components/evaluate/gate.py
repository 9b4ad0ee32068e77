"""The promotion gate: the new model against the current champion on the same test split.

Differences come with paired bootstrap intervals (the same resampled sentences score both models,
so the interval is about the models, not about which sentences happened to be drawn). The decision
uses the point differences and the preset's rules; the intervals stand beside them in the report so
a reader sees how much of a "win" is noise.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
from pydantic import Field, model_validator

from components import tasks
from components.shared import inputs
from components.shared.config import StrictModel
from components.shared.errors import UserError
from components.shared.lineage import DATA_REV_TAG
from components.tasks import classification
from components.tasks.classification import metric_values  # noqa: F401 (the classification gate's metrics, as tests call them)

CONTROL = {"control": ("vs_control", "random-init control", "random-init control")}  # every task's control, after its own baselines
CLASSIFICATION_SHOWN = [["vs_tfidf", "vs TF-IDF + LR"], ["vs_majority", "vs majority baseline"]]  # a gate.json without "shown"


class GateConfig(StrictModel):
    """The defaults are classification's; evaluate fills the task's own (components/tasks/, GATE_DEFAULTS) where the preset sets none."""

    metrics: list[str] = Field(
        ["accuracy", "macro_f1"], min_length=1, description="gated metrics (classification: accuracy, macro_f1; regression: pearson, spearman, rmse); the first is the one that must improve"
    )
    min_improvement: float = Field(0.0, description="the first metric must beat the champion by at least this (point estimate; 0 = not worse)")
    tolerance: dict[str, float] = Field({"accuracy": 0.01, "macro_f1": 0.01}, description="no gated metric may be worse than the champion's by more than this (lower is better for rmse)")
    min_gain_over_baseline: float = Field(0.02, description="with no champion yet: the task's primary metric (classification: accuracy; regression: pearson) must beat `baseline` by this")
    baseline: str = Field(
        "majority",
        description="what a first model (no champion yet) is judged against: classification majority or tfidf (TF-IDF + logistic regression), regression mean or ridge "
        "(TF-IDF + ridge), either task control (the random-init control; needs finetune.control) or strongest (whichever of them scores the highest on the primary metric in this run)",
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
        every = [tasks.get(name) for name in tasks.NAMES]  # which task's: EvaluateConfig checks (check below)
        metrics = list(dict.fromkeys(m for t in every for m in t.GATE_METRICS))
        wrong = [m for m in self.metrics if m not in metrics]
        if wrong:
            raise ValueError(f"evaluate.gate.metrics {wrong} are no task's metrics: use some of {', '.join(metrics)}")
        choices = list(dict.fromkeys([*(b for t in every for b in t.BASELINES), *CONTROL, "strongest"]))
        if self.baseline not in choices:
            raise ValueError(f"evaluate.gate.baseline {self.baseline!r} is unknown: use one of {', '.join(choices)}")
        return self

    def check(self, task: ModuleType, name: str) -> None:
        """The metrics and the baseline are the task's: a ValueError naming the key otherwise."""
        wrong = [m for m in self.metrics if m not in task.GATE_METRICS]
        if wrong:
            raise ValueError(f"evaluate.gate.metrics {wrong} are not {name} metrics: use some of {', '.join(task.GATE_METRICS)}")
        choices = [*task.BASELINES, *CONTROL, "strongest"]
        if self.baseline not in choices:
            raise ValueError(f"evaluate.gate.baseline {self.baseline!r} is not a {name} baseline: use one of {', '.join(choices)}")


def task_defaults(gate: dict, task: ModuleType) -> dict:
    """The gate section with the task's defaults where the preset set nothing (classification's
    are GateConfig's own, so a classification preset validates to what it always did)."""
    defaults = task.GATE_DEFAULTS
    out = {**gate}
    out.setdefault("metrics", defaults["metrics"])
    if "tolerance" not in gate and isinstance(out["metrics"], list):
        out["tolerance"] = {m: t for m, t in defaults["tolerance"].items() if m in out["metrics"]}
    out.setdefault("baseline", defaults["baseline"])
    return out


def baselines(task: ModuleType) -> dict:
    """Name -> (gate.json key, title, short title) of the task's baselines and the control, in the order `strongest` prefers on ties."""
    return {**task.BASELINES, **CONTROL}


def compare(y: np.ndarray, new: np.ndarray, other: np.ndarray, n_classes: int, config: GateConfig, task: ModuleType = classification) -> dict:
    """Point scores of both models and the paired-bootstrap interval of (new - other), per metric
    of the task (`n_classes`: what its metric_values needs besides y and pred)."""
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, len(y), size=(config.bootstrap_samples, len(y)))
    point_new, point_other = task.metric_values(y, new, n_classes), task.metric_values(y, other, n_classes)
    boot_new, boot_other = task.metric_values(y[idx], new[idx], n_classes), task.metric_values(y[idx], other[idx], n_classes)
    tail = (1 - config.confidence) / 2 * 100
    out = {}
    for m in task.GATE_METRICS:
        diffs = boot_new[m] - boot_other[m]
        low, high = np.percentile(diffs, [tail, 100 - tail])
        new_v, other_v = float(point_new[m][0]), float(point_other[m][0])
        out[m] = {"new": new_v, "other": other_v, "diff": new_v - other_v, "low": float(low), "high": float(high)}
    return out


def choose_baseline(config: GateConfig, comparisons: dict, task: ModuleType = classification) -> dict:
    """The baseline a first model is judged against: `config.baseline`, or for `strongest` the
    available one with the highest test score on the task's primary metric (classification:
    accuracy). `comparisons` maps gate.json keys (vs_majority, vs_tfidf, vs_control, ...) to
    `compare` results or None. Returns {'key', 'title', <primary metric>, 'gain', 'why'}."""
    known, metric = baselines(task), task.PRIMARY_METRIC
    found = {name: comparisons[key] for name, (key, *_) in known.items() if comparisons.get(key)}
    if config.baseline == "strongest":
        name = max(found, key=lambda n: found[n][metric]["other"])  # the first of the baselines on ties
    elif config.baseline not in found:  # only the control is optional
        raise UserError("evaluate.gate.baseline is control but finetune trained no control: set finetune.control: true or choose another evaluate.gate.baseline")
    else:
        name = config.baseline
    title, score = known[name][1], found[name][metric]
    why = f"the strongest baseline, the {title} (test {metric} {score['other']:.4f})" if config.baseline == "strongest" else f"the {title}"
    return {"key": name, "title": title, metric: score["other"], "gain": score["diff"], "why": why}


def decide(config: GateConfig, champion: dict | None, vs_champion: dict | None, baseline: dict, task: ModuleType = classification) -> dict:
    """Apply the preset's rules; `baseline` (from choose_baseline) decides when there is no
    champion yet. Returns {'passed', 'reasons', 'summary'}; reasons say what failed. A metric
    where lower is better (RMSE) improves as its difference falls."""
    reasons, primary, higher = [], task.PRIMARY_METRIC, task.GATE_METRICS
    gain_of = lambda m: vs_champion[m]["diff"] if higher[m] else -vs_champion[m]["diff"]  # noqa: E731
    if vs_champion is None:
        gain, title = baseline["gain"], baseline["title"]
        if gain < config.min_gain_over_baseline:
            reasons.append(f"{primary} beats the {title} by {gain:+.4f}, less than the required {config.min_gain_over_baseline:+.4f}")
        against = f"no champion yet: judged against {baseline['why']}"
        detail = f"{primary} {gain:+.4f} over the {title}"
    else:
        first = config.metrics[0]
        if gain_of(first) < config.min_improvement:
            better = "" if higher[first] else " (lower is better)"
            reasons.append(f"{first} changed by {vs_champion[first]['diff']:+.4f} against the champion{better}, less than the required {config.min_improvement:+.4f}")
        for m in config.metrics:
            tol = config.tolerance.get(m, 0.0)
            if gain_of(m) < -tol:
                side = "below" if higher[m] else "above"
                reasons.append(f"{m} {'fell' if higher[m] else 'rose'} {abs(vs_champion[m]['diff']):.4f} {side} the champion (tolerance {tol:.4f})")
        against = f"against champion version {champion['version']}"
        detail = ", ".join(f"{m} {vs_champion[m]['diff']:+.4f} [{vs_champion[m]['low']:+.4f}, {vs_champion[m]['high']:+.4f}]" for m in config.metrics)
    passed = not reasons
    summary = f"gate {'passed' if passed else 'failed'} {against}: {detail}"
    return {"passed": passed, "reasons": reasons, "summary": summary}


def champion_predictions(model_name: str, alias: str, texts: list[str], batch_size: int, task: ModuleType = classification) -> tuple[dict, np.ndarray] | None:
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
    return info, predict_registered(parts["model"], parts["tokenizer"], texts, batch_size, task)


def predict_registered(model, tokenizer, texts: list[str], batch_size: int, task: ModuleType = classification) -> np.ndarray:
    """A registered model's predictions on `texts`, tokenized with its own tokenizer (a champion
    trained on another data revision has another vocabulary) and cut to its own max_seq_len and
    truncation (another revision may have chosen others), then through the task's `predict`,
    the new model's own path: the same collate, batching, eval mode and device."""
    import pandas as pd

    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    spec = getattr(model.config, inputs.INPUTS_CONFIG_KEY, None)
    if spec:  # cut as its training inputs were (finetune records it)
        ids = inputs.encode(tokenizer, list(texts), spec)
    else:  # a version registered before the record: the tokenizer's own head truncation
        limit = min(getattr(model.config, "max_position_embeddings", 512), 512)
        ids = tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]
    # predict also reports a loss, which needs targets: 0 is in every task's target space; unused.
    rows = pd.DataFrame({"input_ids": ids, "label": np.zeros(len(ids), dtype=np.int64)})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
    return task.predict(model, rows, pad_id, batch_size)[0]


def render_markdown(gate: dict, picture: str) -> str:
    """The gate report people read: decision first, then every comparison with its interval."""
    conf = int(round(gate["confidence"] * 100))
    lines = [f"# Promotion gate: {'PASSED' if gate['passed'] else 'FAILED'}", "", gate["summary"], ""]
    lines += [f"- {r}" for r in gate["reasons"]] + ([""] if gate["reasons"] else [])
    rules = gate["rules"]
    lines += [
        f"Rules: metrics {', '.join(rules['metrics'])}; first must improve by >= {rules['min_improvement']}; tolerances {rules['tolerance']}; "
        f"without a champion, {gate.get('primary_metric', 'accuracy')} over the baseline (evaluate.gate.baseline: {rules.get('baseline', 'majority')}) >= {rules['min_gain_over_baseline']}.",
        "",
    ]
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
    lower = set(gate.get("lower_is_better", []))  # RMSE: a better model has a negative difference
    for i, (label, v) in enumerate(rows):
        better = v["high"] < 0 if label.rsplit(": ", 1)[-1] in lower else v["low"] > 0
        ax.errorbar(v["diff"], i, xerr=[[v["diff"] - v["low"]], [v["high"] - v["diff"]]], fmt="o", capsize=4, color="tab:green" if better else "tab:blue")
    ax.axvline(0, color="black", lw=1)
    for tol in set((tol if m in lower else -tol) for m, tol in gate["rules"]["tolerance"].items()):
        ax.axvline(tol, color="tab:red", ls="--", lw=1)
    ax.set(yticks=range(len(rows)), yticklabels=[r[0] for r in rows], xlabel=f"difference (new - other), {int(gate['confidence'] * 100)}% bootstrap interval")
    ax.set_title(f"gate {'passed' if gate['passed'] else 'failed'}", color="tab:green" if gate["passed"] else "tab:red")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def shown(task: ModuleType) -> list[list[str]]:
    """The task's baselines as the report lists them (gate.json "shown"): the strong one first."""
    return [[key, f"vs {short}"] for key, _, short in reversed(task.BASELINES.values())]


def _comparisons(gate: dict):
    if gate.get("vs_champion"):
        yield f"vs champion v{gate['champion']['version']}", gate["vs_champion"]
    if gate.get("vs_control"):
        yield "vs random-init control", gate["vs_control"]
    for key, title in gate.get("shown", CLASSIFICATION_SHOWN):
        if gate.get(key):
            yield title, gate[key]
