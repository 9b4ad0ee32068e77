"""The fine-tuning loop: a small learning-rate search, each run within a step budget with early stopping.

One run per rate in `learning_rates`, each from the same initial weights and seed; a run validates
every `eval_every` steps and stops after `patience` validations without improvement; the best
weights of the best run are kept. Evaluations and runs are ranked on the validation
`select_metric`, ties broken by the lower validation loss: on a small validation split accuracy
often stays flat for several evaluations while the model still improves (at the start, say), and
the loss keeps such a plateau from ending a run. The test split never enters here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from components.tasks.classification import collate, scores, to_device
from components.shared.distributed import World
from components.shared.errors import UserError
from components.shared.training import Progress, optimizer_and_schedule

EVALS_PER_BUDGET = 10  # the default eval_every validates at least this often within max_steps ...
MIN_EVAL_STEPS = 50  # ... unless that is more often than every 50 steps (or an epoch is shorter)


@dataclass
class Run:
    """One rate's run: its step history (evaluations included), its evaluations, its best one and those weights."""

    lr: float
    history: list[dict]
    evaluations: list[dict] = field(default_factory=list)
    best: dict | None = None
    state: dict | None = None  # the best evaluation's weights, on the CPU
    stopped_early: bool = False
    diverged_at: int | None = None  # the step whose loss was not finite; the run ended there

    def summary(self) -> dict:
        keys = ("lr", "best", "stopped_early", "diverged_at", "evaluations")
        return {"steps": self.history[-1]["step"] if self.history else 0, **{k: getattr(self, k) for k in keys}}


@dataclass
class Setup:
    """What every run of one model shares."""

    model: Any
    step_fn: Any  # the model, or its DDP wrapper
    pad_id: int
    train: pd.DataFrame
    val: pd.DataFrame
    config: Any  # FinetuneConfig
    world: World
    name: str
    class_w: Any  # per-class loss weights (float32, on the model's device), or None
    row_w: Any  # each train row's loss weight (float64, CPU): a global batch's sum normalises its loss


def search(model, pad_id: int, train: pd.DataFrame, val: pd.DataFrame, config, name: str, world: World = World()):
    """Train one run per rate from the same initial weights and seed; load the best run's best weights.

    Returns (model, runs, index of the chosen run). Ties go to the earlier rate."""
    s = prepare(model, pad_id, train, val, config, name, world)
    initial, rng = cpu_state(model), rng_state()
    runs: list[Run] = []
    chosen = 0
    for i, lr in enumerate(config.learning_rates):
        model.load_state_dict(initial)
        set_rng_state(rng)  # the same dropout masks for every rate (the stream goes on from the head's init, not replaying it)
        runs.append(train_run(s, lr, name if len(config.learning_rates) == 1 else f"{name} lr={lr:g}"))
        if rank(runs[i], config.select_metric) > rank(runs[chosen], config.select_metric):
            runs[chosen].state, chosen = None, i
        elif i != chosen:
            runs[i].state = None
    if runs[chosen].best is None:
        raise UserError(f"fine-tuning ({name}) diverged before its first validation at every rate in {config.learning_rates}: lower finetune.learning_rates")
    model.load_state_dict(runs[chosen].state)
    if world.is_main and len(runs) > 1:
        tried = ", ".join(f"{r.lr:g} {r.best[config.select_metric]:.4f}" if r.best else f"{r.lr:g} diverged" for r in runs)
        print(f"[{name}] learning rates by validation {config.select_metric}: {tried} -> {runs[chosen].lr:g}", flush=True)
    return model, runs, chosen


def prepare(model, pad_id: int, train: pd.DataFrame, val: pd.DataFrame, config, name: str, world: World) -> Setup:
    """The DDP wrapper (once per model: every run reuses it) and the loss weights."""
    import torch

    if config.batch_size % world.size:  # an outer torchrun may start more processes than finetune.nproc
        raise UserError(f"finetune.batch_size {config.batch_size} does not split into {world.size} processes: make batch_size a multiple of {world.size}")
    step_fn = model
    device = next(model.parameters()).device
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_fn = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)  # broadcasts rank 0's weights (the fresh head included) to every rank
    weights = class_weights(train["label"].to_numpy(), model.config.num_labels, config.class_weights)
    labels = torch.from_numpy(train["label"].to_numpy(dtype=np.int64, copy=True))
    class_w = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    row_w = torch.ones(len(train), dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)[labels]
    return Setup(model, step_fn, pad_id, train, val, config, world, name, class_w, row_w)


def train_run(s: Setup, lr: float, name: str) -> Run:
    """One run at one peak rate: up to max_steps, validating every `eval_interval` steps and at the end."""
    import torch

    cfg = s.config
    opt, sched = optimizer_and_schedule(s.model, lr, cfg.weight_decay, cfg.warmup_ratio, cfg.max_steps, layer_decay=cfg.layer_decay)
    progress = Progress(name, cfg.max_steps, cfg.log_every, quiet=not s.world.is_main)
    run, every = Run(lr, progress.history), eval_interval(cfg, len(s.train))
    g = torch.Generator().manual_seed(cfg.seed)  # the same batch order on every rank and for every rate
    step = stale = 0
    while True:
        s.model.train()
        for idx in torch.randperm(len(s.train), generator=g).split(cfg.batch_size):
            step += 1
            done = train_step(s, idx, opt, sched)
            if done is None:
                run.diverged_at = step
                say(s, f"[{name}] diverged at step {step} (loss not finite): this rate's run ends, its best validation so far stands")
                return run
            progress.step(step, done[0], sched.get_last_lr()[0], done[1])
            if step % every and step < cfg.max_steps:
                continue
            stale = 0 if validate(s, run, step, name) else stale + 1
            run.stopped_early = bool(cfg.patience) and stale >= cfg.patience and step < cfg.max_steps
            if run.stopped_early:
                say(s, f"[{name}] stopping early at step {step} of {cfg.max_steps}: {stale} validations without improvement; keeping step {run.best['step']}")
            if run.stopped_early or step >= cfg.max_steps:
                return run
            s.model.train()


def train_step(s: Setup, idx, opt, sched) -> tuple[float, int] | None:
    """One optimizer step on this rank's slice of the global batch `idx`: (global loss, tokens), None if not finite.

    Each rank's summed (weighted) loss is divided by the global batch's total row weight and
    multiplied by the number of ranks, which DDP's gradient average cancels: the gradient is that
    of the global batch's weighted mean loss (F.cross_entropy's mean: sum of w[y] * loss over the
    sum of w[y]), as on one process. Every rank draws the whole global batch, so each knows that sum
    without a collective. A rank whose slice of a short last batch is empty (fewer rows than ranks)
    runs one row at weight zero, so that every rank takes part in DDP's all-reduce."""
    import torch
    import torch.distributed as dist

    W = s.world.size
    mine, keep = idx.tensor_split(W)[s.world.rank], 1.0
    if not len(mine):
        mine, keep = idx[:1], 0.0
    batch = to_device(collate(s.train.iloc[mine.numpy()], s.pad_id), s.model)
    logits = s.step_fn(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    summed = weighted_loss_sum(logits, batch["labels"], s.class_w) * keep
    norm = float(s.row_w[idx].sum())
    # The global batch's loss and token count, known to every rank (so all stop together on a divergence).
    totals = torch.stack([summed.detach().double(), batch["attention_mask"].sum().double() * keep])
    if W > 1:
        dist.all_reduce(totals)
    loss = float(totals[0]) / norm
    if not np.isfinite(loss):
        opt.zero_grad(set_to_none=True)
        return None
    (summed * (W / norm)).backward()
    torch.nn.utils.clip_grad_norm_(s.model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss, int(totals[1])


def validate(s: Setup, run: Run, step: int, name: str) -> bool:
    """Score the whole validation split (on every rank: same weights, same scores, no collective),
    record it in the run and its history; keep the weights if it is the best so far."""
    metric = s.config.select_metric
    ev = {"step": step, **scores(s.model, s.val, s.pad_id, s.model.config.num_labels)}
    run.evaluations.append(ev)
    run.history[-1].update(eval_loss=ev["loss"], eval_accuracy=ev["accuracy"], eval_macro_f1=ev["macro_f1"])
    better = run.best is None or rank_of(ev, metric) > rank_of(run.best, metric)
    if better:
        run.best, run.state = ev, cpu_state(s.model)
    note = "best so far" if better else f"best {metric} {run.best[metric]:.4f} at step {run.best['step']}"
    say(s, f"[{name}] step {step}/{s.config.max_steps}: validation accuracy {ev['accuracy']:.4f} macro-F1 {ev['macro_f1']:.4f} loss {ev['loss']:.4f} ({note})")
    return better


def eval_interval(config, train_rows: int) -> int:
    """`eval_every`, or by default once an epoch, or every max_steps / EVALS_PER_BUDGET steps when
    that comes sooner, but never more often than every MIN_EVAL_STEPS: a 480-row train split at
    batch 32 validates every 15 steps (an epoch), 10k sentences with a 2,000-step budget every 200.
    The floor keeps a small validation split's noise, and the plateau a small model sits on at the
    start, from ending a run: validating every few steps, patience 3 ran out after 12 steps on
    the tests' 1-layer model, one epoch before it learned the task."""
    if config.eval_every:
        return config.eval_every
    per_epoch = -(-train_rows // config.batch_size)
    return max(1, min(per_epoch, max(MIN_EVAL_STEPS, -(-config.max_steps // EVALS_PER_BUDGET))))


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


def weighted_loss_sum(logits, labels, class_w):
    """Sum over rows of w[y] * cross-entropy (w = 1 without class weights), in fp32."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), labels, weight=class_w, reduction="sum")


def rank_of(evaluation: dict, metric: str) -> tuple[float, float]:
    return (evaluation[metric], -evaluation["loss"])


def rank(run: Run, metric: str) -> tuple[float, float]:
    return rank_of(run.best, metric) if run.best else (-np.inf, -np.inf)


def cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def rng_state() -> tuple:
    import torch

    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None


def set_rng_state(state: tuple) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def say(s: Setup, line: str) -> None:
    if s.world.is_main:
        print(line, flush=True)
