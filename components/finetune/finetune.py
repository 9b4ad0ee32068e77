"""finetune: a model for the downstream task (`task`: classification, regression) initialised
from the pretrained encoder; the task module (components/tasks/) supplies the head, the batches,
the loss and the validation scores.

The MLM head is dropped and a fresh task head is trained on the labeled train split
within a step budget, validated every `eval_every` steps and stopped after `patience` validations
without improvement, once per rate in `learning_rates`; the best weights of the best rate on
validation are kept (`loop.py`). A randomly initialised control of the same shape gets exactly the
same search and budget. With `nproc` > 1 the stage re-launches itself under torchrun (`worker.py`),
as pretrain does, and every rank trains on its slice of the same global batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, PositiveFloat, model_validator

from components import tasks
from components.finetune import loop
from components.shared import artifacts, distributed, inputs
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.training import require_dir, save_history, seed_everything
from components.tasks.classification import accuracy
from components.tasks.sequence import CONTROL_DIR

__all__ = ["CONTROL_DIR", "SEARCH", "FinetuneConfig", "finetune", "run", "build_classifier", "accuracy"]

SEARCH = "search.json"  # every rate's evaluations, for the classifier and the control


class FinetuneConfig(StageConfig):
    task: tasks.TaskName = Field(tasks.DEFAULT, description=f"the downstream task, a module in components/tasks/: {', '.join(tasks.NAMES)}")
    max_steps: int = Field(1000, ge=1, description="step budget of each run (one run per learning rate); early stopping usually ends a run sooner")
    eval_every: int | None = Field(None, ge=1, description="validate every N steps (and at the last); None = once an epoch, or every max_steps / 10 if sooner, but at most every 50 steps")
    patience: int = Field(3, ge=0, description="stop a run after this many validations without improvement, keeping its best weights; 0 = always run the whole budget")
    batch_size: int = Field(32, ge=1, description="sentences per step, padded to the longest in the batch")
    learning_rates: list[PositiveFloat] = Field(
        [1e-4], min_length=1, description="peak rates to try, one run each from the same initial weights and seed; the best on validation is kept (a single `learning_rate: x` means [x])"
    )
    select_metric: str = Field(
        "accuracy",
        description="what early stopping and the rate search optimise on validation (ties: lower validation loss); classification: accuracy or macro_f1 "
        "(for imbalanced or many classes); regression: rmse (the default, lower is better), pearson or spearman",
    )
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: cross-entropy weighted by n_rows / (n_classes * rows of the class), counted on the train split (classification only)"
    )
    pooling: Literal["pooler", "cls"] = Field(
        "pooler",
        description="pooler: BERT's pooler (dense + tanh on [CLS]) from a random init, as transformers builds it; cls: the same pooler initialised to the identity with zero bias, so the head starts on tanh([CLS]) of the pretrained encoder (it trains from there)",
    )
    layer_decay: float = Field(1.0, gt=0, le=1, description="layer-wise rate decay: encoder layer i of L trains at lr * decay**(L - i), embeddings decay**(L + 1), pooler and head at lr; 1.0 = off")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of max_steps spent warming up (linear decay to zero at max_steps)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay, not applied to biases and norms")
    label_names: list[str] = Field(["negative", "positive"], description="class names, index = label id (shown by the served model); classification only")
    seed: int = Field(42, description="seeds the head, batch order and dropout (the same for every rate)")
    threads: int | None = Field(None, ge=1, description="torch threads; None = all cores")
    log_every: int = Field(50, ge=1, description="progress line every N steps")
    control: bool = Field(True, description="also fine-tune a randomly initialised encoder of the same shape with the same rate search and budget: evaluate reports the gain pretraining buys")
    nproc: int = Field(1, ge=1, description="data-parallel processes (torchrun; nccl on GPUs, gloo on CPUs); batch_size is the global batch over all of them")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when visible")

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data):
        """`epochs` gave way to the step budget; `learning_rate: x` still means `learning_rates: [x]`."""
        if not isinstance(data, dict):
            return data
        if "epochs" in data:
            raise ValueError("finetune.epochs is gone: the budget is finetune.max_steps (steps per run, with early stopping on validation); set max_steps instead")
        if "learning_rate" in data:
            if "learning_rates" in data:
                raise ValueError("finetune.learning_rate and finetune.learning_rates are both set: keep one (learning_rates: [a, b] searches several)")
            data = {**{k: v for k, v in data.items() if k != "learning_rate"}, "learning_rates": [data["learning_rate"]]}
        task = data.get("task", tasks.DEFAULT)
        if "select_metric" not in data and task in tasks.NAMES:  # the task's own default (classification: accuracy)
            data = {**data, "select_metric": next(iter(tasks.get(task).SELECT_METRICS))}
        return data

    @model_validator(mode="after")
    def _task_knows(self):
        task = tasks.get(self.task)
        if self.select_metric not in task.SELECT_METRICS:
            raise ValueError(f"finetune.select_metric {self.select_metric!r} is not a {self.task} metric: use one of {', '.join(task.SELECT_METRICS)}")
        if self.class_weights != "none" and not task.USES_CLASSES:
            raise ValueError(f"finetune.class_weights {self.class_weights!r} weighs classes, which the {self.task} task has none of: set finetune.class_weights: none")
        return self

    @model_validator(mode="after")
    def _fits(self):
        if self.batch_size % self.nproc:
            raise ValueError(f"batch_size {self.batch_size} does not split into nproc {self.nproc} equal parts: make batch_size a multiple of nproc")
        if self.eval_every and self.eval_every > self.max_steps:
            raise ValueError(f"eval_every {self.eval_every} is beyond max_steps {self.max_steps}: validation would run only at the end; lower eval_every or leave it unset")
        return self


def finetune(cleaned_dir: Path, pretrained_dir: Path, out_dir: Path, config: FinetuneConfig) -> dict:
    """Fine-tune on the train split, keep the best rate's best weights on validation, save model + tokenizer.

    With config.nproc > 1 (and no outer torchrun) this re-launches itself on nproc processes and
    returns rank 0's metrics."""
    from components.finetune.attempt import attempt, marker_path
    from components.shared import settings

    cleaned_dir = require_dir(cleaned_dir, "cleaned data", "clean_tokenize")
    pretrained_dir = require_dir(pretrained_dir, "pretrained model", "pretrain")
    if distributed.under_torchrun():  # a rank of an outer launch: the launching process marks the attempt
        return run(cleaned_dir, pretrained_dir, Path(out_dir), config)
    # A kill -9 leaves the marker: the next attempt on the same inputs says it restarts (attempt.py).
    with attempt(marker_path(settings.project_dir(), config.model_dump(), cleaned_dir, pretrained_dir)):
        if config.nproc > 1:
            request = {"cleaned_dir": str(cleaned_dir), "pretrained_dir": str(pretrained_dir), "out_dir": str(out_dir), "config": config.model_dump()}
            return distributed.launch("components.finetune.worker", request, config.nproc)
        return run(cleaned_dir, pretrained_dir, Path(out_dir), config)


def run(cleaned_dir: Path, pretrained_dir: Path, out_dir: Path, config: FinetuneConfig) -> dict:
    """The fine-tuning on this process (one of the ranks when under torchrun); rank 0 writes."""
    import torch
    from transformers import AutoTokenizer

    seed_everything(config.seed, config.threads)
    device = distributed.resolve_device(config.device, distributed.world(), "finetune")
    world = distributed.init(device.type)
    try:
        train, val = labeled_splits(cleaned_dir, config)
        spec = input_spec(cleaned_dir)  # before any training: a missing report fails in seconds
        tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
        model = build_classifier(pretrained_dir, config).to(device)
        model, runs, chosen = loop.search(model, tokenizer.pad_token_id, train, val, config, "finetune", world)
        metrics = {**search_metrics("finetune/", runs, chosen, config), "finetune/train_rows": len(train)}
        metrics["finetune/eval_every"] = loop.eval_interval(config, len(train))
        control = control_runs = None
        if config.control:  # same shape, same data, same rates, steps and seed, but no pretraining
            seed_everything(config.seed, config.threads)
            control = build_classifier(pretrained_dir, config, random_init=True).to(device)
            control, control_runs, control_chosen = loop.search(control, tokenizer.pad_token_id, train, val, config, "finetune-control", world)
            metrics.update(search_metrics("finetune/control_", control_runs, control_chosen, config))

        if world.is_main:
            for m in (model, control):  # config.json says how the texts were cut (gate.predict_registered reads it)
                if m is not None:
                    setattr(m.config, inputs.INPUTS_CONFIG_KEY, spec)
            with artifacts.staged_dir(out_dir) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                save_history(tmp, runs[chosen].history, f"fine-tuning (lr {runs[chosen].lr:g})")
                report = {"select_metric": config.select_metric, "classifier": {"chosen": chosen, "runs": [r.summary() for r in runs]}}
                if control is not None:
                    control.save_pretrained(tmp / CONTROL_DIR)
                    tokenizer.save_pretrained(tmp / CONTROL_DIR)
                    report["control"] = {"chosen": control_chosen, "runs": [r.summary() for r in control_runs]}
                artifacts.write_json(tmp / SEARCH, report)
        return {**metrics, "finetune/threads": torch.get_num_threads(), "finetune/processes": world.size}
    finally:
        distributed.shutdown()


def input_spec(cleaned_dir: Path) -> dict:
    """How clean_tokenize cut the labeled texts (inputs.inputs_of of its report)."""
    report = cleaned_dir / artifacts.CLEAN_REPORT
    if not report.is_file():
        raise UserError(f"{report} is missing: run the clean_tokenize stage first (it records the labeled texts' length and cut)")
    return inputs.inputs_of(artifacts.read_json(report)["tokens"])


def labeled_splits(cleaned_dir: Path, config: FinetuneConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and validation rows (the test split stays untouched), their labels checked by the task."""
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train, val = labeled[labeled.split == "train"], labeled[labeled.split == "validation"]
    if train.empty or val.empty:
        raise UserError(f"the labeled set has {len(train)} train and {len(val)} validation rows: both splits need rows")
    tasks.get(config.task).check_labels(labeled, config)
    return train, val


def build_classifier(pretrained_dir: Path, config: FinetuneConfig, random_init: bool = False):
    """The task's model (an AutoModelForSequenceClassification: a classifier, or a one-output
    regressor) on the pretrained encoder, or of its shape from random weights (the control)."""
    return tasks.get(config.task).build_model(pretrained_dir, config, random_init)


def search_metrics(prefix: str, runs: list, chosen: int, config: FinetuneConfig) -> dict:
    """The chosen run's validation scores, rate and steps, and every rate's best validation score
    (`<prefix>val_<metric>_lr<i>`, -1 where a rate diverged before its first validation)."""
    metric, best = config.select_metric, runs[chosen].best
    out = {f"{prefix}val_{k}": v for k, v in best.items() if k not in ("step", "loss")} | {f"{prefix}lr": runs[chosen].lr}
    if prefix == "finetune/":  # the classifier's own run; the control's steps are in search.json
        out |= {"finetune/best_step": best["step"], "finetune/steps": runs[chosen].summary()["steps"], "finetune/stopped_early": int(runs[chosen].stopped_early)}
    for i, r in enumerate(runs):
        out[f"{prefix}val_{metric}_lr{i}"] = r.best[metric] if r.best else -1.0
    return out
