"""Downstream tasks, one module each, looked up by the name in `finetune.task`.

ingest, validate, finetune, evaluate and register ask the task for everything that depends on
what is predicted; none of them knows a task. A new task is one module here plus one line in
`TASKS`; the module provides every name in `REQUIRED` (tests/contract/test_components.py fails
on a registered module that lacks one; the README's "Adding a task" shows the list):

- constants: `DESCRIPTION` (one line), `MODEL_NAME` (register.model_name's default),
  `MLFLOW_TASK` (mlflow.transformers' task string), `USES_CLASSES` (whether finetune.label_names
  applies), `SELECT_METRICS` and `GATE_METRICS` (metric -> higher is better; the first
  SELECT_METRICS entry is finetune.select_metric's default), `PRIMARY_METRIC` (what a first model
  must beat the baseline on), `GATE_DEFAULTS` (evaluate.gate's metrics, tolerance and baseline),
  `BASELINES` (gate name -> gate.json key, title, short title), `PLOT` (evaluate's picture: file, alt
  text), `CARD` (model-card text: intended_use, limits, head, registered), `CONTROL_DIR`
- label schema and checks: `parse_labels(values, names, path, column)` (ingest),
  `label_columns(labeled)`, `label_profile(train_labels)`, `label_expectations(allowed, profile,
  gxe, Column)` (validate), `check_labels(labeled, config)` (finetune)
- model and training: `build_model(pretrained_dir, config, random_init)`, `load_model(dir)`,
  `collate(rows, pad_id)`, `to_device(batch, model)`, `loss_weights(train_labels, num_labels,
  mode, device)`, `loss_sum(logits, labels, class_w)`, `scores(model, rows, pad_id)` (validation
  scores and "loss"), `describe(scores)` (the progress line)
- prediction and metrics: `predict(model, rows, pad_id, batch_size)`, `from_logits(logits)`,
  `metric_values(y, pred, n_outputs)` (vectorised over bootstrap rows), `n_outputs(report)`
- evaluation: `evaluation(model, labeled, train, val, test, preds, test_loss, seed)` (the test
  report and the baselines' predictions, tuned on validation only), `plot(report, y, preds,
  path)`, `score_table(report, gate)`, `baseline_note(report)`
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Annotated

from pydantic import AfterValidator

from components.shared.errors import UserError

# name -> module; imported on first use (pandas and the task's helpers are not needed at CLI start-up)
TASKS = {
    "classification": "components.tasks.classification",
    "regression": "components.tasks.regression",
}
NAMES = tuple(TASKS)
DEFAULT = "classification"

# What every task module provides: the one list (the contract test and the README read it).
REQUIRED = (
    "DESCRIPTION", "MODEL_NAME", "MLFLOW_TASK", "USES_CLASSES", "SELECT_METRICS", "GATE_METRICS", "PRIMARY_METRIC", "GATE_DEFAULTS",
    "BASELINES", "PLOT", "CARD", "CONTROL_DIR",
    "parse_labels", "label_columns", "label_profile", "label_expectations", "check_labels",
    "build_model", "load_model", "collate", "to_device", "loss_weights", "loss_sum", "scores", "describe",
    "predict", "from_logits", "metric_values", "n_outputs",
    "evaluation", "plot", "score_table", "baseline_note",
)  # fmt: skip


def unknown(name: str) -> str:
    return f"unknown task {name!r}: the known ones are {', '.join(NAMES)}; set finetune.task to one of them"


def _known(name: str) -> str:
    if name not in NAMES:
        raise ValueError(unknown(name))
    return name


TaskName = Annotated[str, AfterValidator(_known)]  # a config field naming a registered task: checked where it is read


def get(name: str) -> ModuleType:
    """The task module registered under `name`."""
    if name not in TASKS:
        raise UserError(unknown(name))
    return importlib.import_module(TASKS[name])


def missing(module: ModuleType) -> list[str]:
    """The REQUIRED names `module` lacks (empty for a complete task)."""
    return [name for name in REQUIRED if not hasattr(module, name)]
