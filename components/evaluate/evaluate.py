"""evaluate: the task's test metrics beside its baselines, held-out perplexity, and the gate.

The task (components/tasks/, `task`) scores the test split and trains its baselines on train,
tuned on validation: classification reports accuracy, macro-F1 and the confusion matrix beside
the majority class (a classifier that does not beat it has learned nothing) and TF-IDF +
logistic regression (a pretrained encoder that does not beat it has not yet earned its cost);
regression reports Pearson, Spearman and RMSE and a scatter plot beside the train mean and
TF-IDF + ridge regression.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from components import objectives, tasks
from components.evaluate.gate import GateConfig, render_markdown, shown, task_defaults
from components.evaluate.gate import plot as plot_gate
from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.shards import open_blocks
from components.shared.training import require_dir


class EvaluateConfig(StageConfig):
    task: tasks.TaskName = Field(tasks.DEFAULT, description="the downstream task: filled from finetune.task (name it there, once)")
    batch_size: int = Field(128, ge=1, description="sentences or blocks per forward pass")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masking rate for held-out perplexity")
    seed: int = Field(1234, description="fixes the held-out masks so perplexities compare across runs")
    max_heldout_blocks: int = Field(512, ge=1, description="cap on held-out blocks scored (time bound)")
    threads: int | None = Field(None, ge=1, description="torch threads; None = all cores")
    gate: GateConfig = Field(default_factory=GateConfig, description="rules a new model must meet against the current champion")

    @model_validator(mode="before")
    @classmethod
    def _task_gate_defaults(cls, data):
        """The gate's metrics, tolerances and baseline default to the task's own."""
        if not isinstance(data, dict) or data.get("task", tasks.DEFAULT) not in tasks.NAMES or not isinstance(data.get("gate", {}), dict):
            return data
        return {**data, "gate": task_defaults(data.get("gate") or {}, tasks.get(data.get("task", tasks.DEFAULT)))}

    @model_validator(mode="after")
    def _gate_is_the_tasks(self):
        self.gate.check(tasks.get(self.task), self.task)
        return self


def evaluate(
    cleaned_dir: Path,
    pretrained_dir: Path,
    classifier_dir: Path,
    out_dir: Path,
    config: EvaluateConfig,
    html_page: Path | None = None,
    model_name: str | None = None,
    champion_alias: str = "champion",
) -> dict:
    """Score the fine-tuned model and the MLM, and gate it against `model_name@champion_alias` (no
    model name: no registry, gate against the baseline only); write EVAL_REPORT, the task's plot
    (CONFUSION_PNG or SCATTER_PNG), EVAL_HTML (also to `html_page`, e.g. a KFP HTML artifact) and
    the gate report; return the metrics."""
    import torch

    task = tasks.get(config.task)
    cleaned_dir = require_dir(cleaned_dir, "cleaned data", "clean_tokenize")
    if config.threads:
        torch.set_num_threads(config.threads)
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train, val, test = (labeled[labeled.split == s] for s in ("train", "validation", "test"))
    if test.empty or val.empty:
        raise UserError(f"the labeled set has {len(val)} validation and {len(test)} test rows: both splits need rows (check the split column)")
    model = task.load_model(require_dir(classifier_dir, "classifier", "finetune"))
    preds, test_loss = task.predict(model, test, model.config.pad_token_id, config.batch_size)
    y = test["label"].to_numpy()
    report, baselines = task.evaluation(model, labeled, train, val, test, preds, test_loss, config.seed)
    pretrained = require_dir(pretrained_dir, "pretrained model", "pretrain")
    report["perplexity"] = heldout_perplexity(pretrained, cleaned_dir, config)
    gate = run_gate(config, task, model_name, champion_alias, test, y, preds, baselines, Path(classifier_dir), task.n_outputs(report))
    report["gate_passed"] = int(gate["passed"])
    primary = task.PRIMARY_METRIC
    if gate.get("vs_control"):
        report[f"control_{primary}"] = gate["vs_control"][primary]["other"]
        report["pretraining_gain"] = gate["vs_control"][primary]["diff"]
    if gate.get("vs_champion"):
        report[f"champion_{primary}"] = gate["vs_champion"][primary]["other"]
        report["gain_over_champion"] = gate["vs_champion"][primary]["diff"]
    plot_name, plot_alt = task.PLOT
    with artifacts.staged_dir(out_dir) as tmp:
        artifacts.write_json(tmp / artifacts.EVAL_REPORT, report)
        artifacts.write_json(tmp / artifacts.GATE_REPORT, gate)
        plot_gate(gate, tmp / artifacts.GATE_PNG)
        (tmp / artifacts.GATE_MD).write_text(render_markdown(gate, artifacts.GATE_PNG))
        task.plot(report, y, preds, tmp / plot_name)
        page = render_html(task, report, gate, tmp / plot_name, plot_alt, tmp / artifacts.GATE_PNG, objectives.of_pretrained(pretrained).CARD["perplexity"])
        (tmp / artifacts.EVAL_HTML).write_text(page)
    if html_page:
        Path(html_page).write_text(page)
    print(f"[evaluate] {gate['summary']}", flush=True)
    return {f"eval/{k}": v for k, v in report.items() if isinstance(v, (int, float))}


def run_gate(config: EvaluateConfig, task, model_name: str | None, champion_alias: str, test: pd.DataFrame, y, preds, baselines: dict, classifier_dir: Path, n_outputs: int) -> dict:
    """Compare with the champion, the random-init control and the baselines (`baselines`: gate
    key -> test predictions); decide."""
    from components.evaluate.gate import champion_predictions, choose_baseline, compare, decide

    rules = config.gate
    gate = {"rules": rules.model_dump(), "confidence": rules.confidence, "n_test": int(len(y)), "champion": None, "vs_champion": None, "vs_control": None}
    gate |= {key: compare(y, preds, other, n_outputs, rules, task) for key, other in baselines.items()}
    if (classifier_dir / task.CONTROL_DIR).is_dir():
        control = task.load_model(classifier_dir / task.CONTROL_DIR)
        gate["vs_control"] = compare(y, preds, task.predict(control, test, control.config.pad_token_id, config.batch_size)[0], n_outputs, rules, task)
    found = champion_predictions(model_name, champion_alias, test["text"].tolist(), config.batch_size, task) if model_name else None
    if found:
        gate["champion"], champion_preds = found
        gate["vs_champion"] = compare(y, preds, champion_preds, n_outputs, rules, task)
    gate["baseline"] = None if found else choose_baseline(rules, gate, task)  # with a champion, the champion decides
    gate |= {"primary_metric": task.PRIMARY_METRIC, "lower_is_better": [m for m, up in task.GATE_METRICS.items() if not up], "shown": shown(task)}
    return {**gate, **decide(rules, gate["champion"], gate["vs_champion"], gate["baseline"], task)}


def heldout_perplexity(pretrained_dir: Path, cleaned_dir: Path, config: EvaluateConfig) -> float:
    """exp(mean held-out loss per target) of the objective the model was pretrained with (masked LM:
    over seeded masked positions; causal LM: every next token), on the first held-out blocks."""
    heldout = open_blocks(cleaned_dir / artifacts.BLOCKS_HELDOUT)
    blocks = heldout.take(np.arange(min(len(heldout), config.max_heldout_blocks))).astype(np.int64)
    objective = objectives.of_pretrained(pretrained_dir)
    return objective.heldout_perplexity(pretrained_dir, blocks, config.batch_size, config.mlm_probability, config.seed)


def render_html(task, report: dict, gate: dict, plot_png: Path, plot_alt: str, gate_png: Path, perplexity_of: str = "masked-LM") -> str:
    """A one-file page for the KFP UI: the gate's decision, the scores beside their baselines, the
    pictures inline. `perplexity_of`: the objective's word for its perplexity (its CARD's)."""
    import base64
    import html

    header, rows = task.score_table(report, gate)
    cell = lambda v: f"{v:.4f}" if v is not None else "&ndash;"  # noqa: E731
    table = "".join(f"<tr><td>{name}</td>{''.join(f'<td>{cell(v)}</td>' for v in values)}</tr>" for name, *values in rows)
    images = [base64.b64encode(Path(p).read_bytes()).decode() for p in (gate_png, plot_png)]
    colour = "green" if gate["passed"] else "firebrick"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in gate["reasons"])
    note = task.baseline_note(report)
    return (
        "<html><body style='font-family:sans-serif'><h2>LMForge evaluation</h2>"
        f"<p style='color:{colour}'><b>{html.escape(gate['summary'])}</b></p><ul>{reasons}</ul>"
        f"<table border='1' cellpadding='4'><tr><th>metric</th><th>model</th>{''.join(f'<th>{h}</th>' for h in header)}</tr>"
        f"{table}</table>"
        f"<p>held-out {html.escape(perplexity_of)} perplexity: {report['perplexity']:.1f} &middot; test sentences: {report['n_test']}" + (f" &middot; {html.escape(note)}" if note else "") + "</p>"
        f"<img alt='gate' src='data:image/png;base64,{images[0]}'/><br/>"
        f"<img alt='{plot_alt}' src='data:image/png;base64,{images[1]}'/></body></html>\n"
    )
