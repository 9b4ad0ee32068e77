"""finetune: a sequence classifier initialised from the pretrained encoder.

The MLM head is dropped and a fresh classification head is trained on the labeled train split;
the epoch with the best validation accuracy is kept (early stopping without a patience knob).
With `nproc` > 1 the stage re-launches itself under torchrun (`worker.py`), as pretrain does, and
every rank trains on its slice of the same global batches (`train_classifier`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from components.shared import artifacts, distributed
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.training import Progress, optimizer_and_schedule, require_dir, save_history, seed_everything


CONTROL_DIR = "control"  # the randomly initialised control classifier, beside the real one


class FinetuneConfig(StageConfig):
    epochs: int = Field(3, ge=1, description="passes over the train split")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (tiny runs)")
    batch_size: int = Field(32, ge=1, description="sentences per step, padded to the longest in the batch")
    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay, not applied to biases and norms")
    label_names: list[str] = Field(["negative", "positive"], description="class names, index = label id (shown by the served model)")
    seed: int = Field(42, description="seeds the head, batch order and dropout")
    threads: int | None = Field(None, ge=1, description="torch threads; None = all cores")
    log_every: int = Field(50, ge=1, description="progress line every N steps")
    control: bool = Field(True, description="also fine-tune a randomly initialised encoder of the same shape with the same budget: evaluate reports the gain pretraining buys")
    nproc: int = Field(1, ge=1, description="data-parallel processes (torchrun; nccl on GPUs, gloo on CPUs); batch_size is the global batch over all of them")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when visible")

    @model_validator(mode="after")
    def _batch_splits(self):
        if self.batch_size % self.nproc:
            raise ValueError(f"batch_size {self.batch_size} does not split into nproc {self.nproc} equal parts: make batch_size a multiple of nproc")
        return self


def finetune(cleaned_dir: Path, pretrained_dir: Path, out_dir: Path, config: FinetuneConfig) -> dict:
    """Fine-tune on the train split, keep the best epoch on validation, save model + tokenizer.

    With config.nproc > 1 (and no outer torchrun) this re-launches itself on nproc processes and
    returns rank 0's metrics."""
    cleaned_dir = require_dir(cleaned_dir, "cleaned data", "clean_tokenize")
    pretrained_dir = require_dir(pretrained_dir, "pretrained model", "pretrain")
    if config.nproc > 1 and not distributed.under_torchrun():
        request = {"cleaned_dir": str(cleaned_dir), "pretrained_dir": str(pretrained_dir), "out_dir": str(out_dir), "config": config.model_dump()}
        return distributed.launch("components.finetune.worker", request, config.nproc)
    return run(cleaned_dir, pretrained_dir, Path(out_dir), config)


def run(cleaned_dir: Path, pretrained_dir: Path, out_dir: Path, config: FinetuneConfig) -> dict:
    """The fine-tuning on this process (one of the ranks when under torchrun); rank 0 writes."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    seed_everything(config.seed, config.threads)
    device = distributed.resolve_device(config.device, distributed.world(), "finetune")
    world = distributed.init(device.type)
    try:
        labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
        train, val = labeled[labeled.split == "train"], labeled[labeled.split == "validation"]
        if train.empty or val.empty:
            raise UserError(f"the labeled set has {len(train)} train and {len(val)} validation rows: both splits need rows")
        num_labels = len(config.label_names)
        if labeled.label.max() >= num_labels or labeled.label.min() < 0:
            raise UserError(f"labels run from {labeled.label.min()} to {labeled.label.max()} but finetune.label_names has {num_labels} names: name every class")
        tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
        hf_logging.set_verbosity_error()  # "some weights were not used": expected, the MLM head is dropped
        labels = {"num_labels": num_labels, "id2label": dict(enumerate(config.label_names)), "label2id": {n: i for i, n in enumerate(config.label_names)}}
        model = AutoModelForSequenceClassification.from_pretrained(pretrained_dir, **labels).to(device)
        model, progress, best = train_classifier(model, tokenizer, train, val, config, "finetune", world)
        metrics = {"finetune/val_accuracy": best[0], "finetune/best_step": best[2], "finetune/steps": progress.history[-1]["step"], "finetune/train_rows": len(train)}
        control = None
        if config.control:  # same shape, same data, same steps and seed, but no pretraining
            seed_everything(config.seed, config.threads)
            shape = AutoConfig.from_pretrained(pretrained_dir, **labels)
            control = AutoModelForSequenceClassification.from_config(shape).to(device)
            control, _, control_best = train_classifier(control, tokenizer, train, val, config, "finetune-control", world)
            metrics["finetune/control_val_accuracy"] = control_best[0]

        if world.is_main:
            with artifacts.staged_dir(out_dir) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                save_history(tmp, progress.history, "fine-tuning")
                if control is not None:
                    control.save_pretrained(tmp / CONTROL_DIR)
                    tokenizer.save_pretrained(tmp / CONTROL_DIR)
        return {**metrics, "finetune/threads": torch.get_num_threads(), "finetune/processes": world.size}
    finally:
        distributed.shutdown()


def train_classifier(model, tokenizer, train: pd.DataFrame, val: pd.DataFrame, config: FinetuneConfig, name: str, world=distributed.World()):
    """Train for the configured budget; keep the epoch with the best validation accuracy.

    Under DDP (world.size > 1) every rank shuffles with the same seeded generator, so all draw the
    same global batches, and takes its slice of each (`tensor_split`: equal slices of a full
    batch; of an epoch's short last batch, slices that differ by at most one row). Each rank's
    summed loss is divided by the global batch's row count and multiplied by the number of ranks,
    which DDP's gradient average cancels: the gradient is that of the global batch's mean loss,
    as on one process. A rank whose slice of a short last batch is empty (fewer rows than ranks)
    runs one row at weight zero, so that every rank takes part in DDP's all-reduce. Validation
    runs on every rank over the whole split without collectives: the weights are the same on
    every rank, so all pick the same best epoch; only rank 0 prints.

    Returns (model with the best weights, progress, (best accuracy, state, step))."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    W = world.size
    if config.batch_size % W:  # an outer torchrun may start more processes than finetune.nproc
        raise UserError(f"finetune.batch_size {config.batch_size} does not split into {W} processes: make batch_size a multiple of {W}")
    steps_per_epoch = -(-len(train) // config.batch_size)
    total = min(config.max_steps or 10**9, steps_per_epoch * config.epochs)
    opt, sched = optimizer_and_schedule(model, config.learning_rate, config.weight_decay, config.warmup_ratio, total)
    progress = Progress(name, total, config.log_every, quiet=not world.is_main)
    step_fn = model
    if W > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        device = next(model.parameters()).device
        step_fn = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)  # broadcasts rank 0's weights (the fresh head included) to every rank
    g = torch.Generator().manual_seed(config.seed)
    best = (-1.0, None, 0)
    step = 0
    while step < total:
        model.train()
        for idx in torch.randperm(len(train), generator=g).split(config.batch_size):
            mine, weight = idx.tensor_split(W)[world.rank], 1.0
            if not len(mine):
                mine, weight = idx[:1], 0.0
            batch = to_device(collate(train.iloc[mine.numpy()], tokenizer.pad_token_id), model)
            logits = step_fn(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss_sum = F.cross_entropy(logits.float(), batch["labels"], reduction="sum") * weight
            # The global batch's loss and token count, known to every rank (so all stop together on a divergence).
            totals = torch.stack([loss_sum.detach().double(), batch["attention_mask"].sum().double() * weight])
            if W > 1:
                dist.all_reduce(totals)
            loss, tokens = float(totals[0]) / len(idx), int(totals[1])
            if not np.isfinite(loss):
                raise UserError(f"fine-tuning ({name}) diverged at step {step + 1} (loss {loss}): lower finetune.learning_rate")
            (loss_sum * (W / len(idx))).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            progress.step(step, loss, sched.get_last_lr()[0], tokens)
            if step >= total:
                break
        acc, val_loss = accuracy(model, val, tokenizer.pad_token_id)
        progress.history[-1].update(eval_loss=val_loss, eval_accuracy=acc)
        if world.is_main:
            print(f"[{name}] step {step}: validation accuracy {acc:.4f} loss {val_loss:.4f}", flush=True)
        if acc > best[0]:
            best = (acc, copy.deepcopy(model.state_dict()), step)
    model.load_state_dict(best[1])
    return model, progress, best


def collate(rows: pd.DataFrame, pad_id: int) -> dict:
    """Pad a batch of token-id arrays to its longest member; labels as a tensor when present."""
    import torch

    seqs = list(rows["input_ids"])
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if "label" in rows:
        batch["labels"] = torch.from_numpy(rows["label"].to_numpy(dtype=np.int64, copy=True))
    return batch


def to_device(batch: dict, model) -> dict:
    """The batch's tensors on the model's device (a no-op on the CPU)."""
    device = next(model.parameters()).device
    return batch if device.type == "cpu" else {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def predict(model, rows: pd.DataFrame, pad_id: int, batch_size: int = 128) -> tuple[np.ndarray, float]:
    """Class predictions and mean cross-entropy for `rows`, in eval mode without gradients."""
    import torch

    model.eval()
    preds, losses = [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            out = model(**to_device(collate(rows.iloc[start : start + batch_size], pad_id), model))
            preds.append(out.logits.argmax(-1).cpu().numpy())
            losses.append(out.loss.item() * min(batch_size, len(rows) - start))
    return np.concatenate(preds), float(sum(losses) / max(len(rows), 1))


def accuracy(model, rows: pd.DataFrame, pad_id: int) -> tuple[float, float]:
    preds, loss = predict(model, rows, pad_id)
    return float((preds == rows["label"].to_numpy()).mean()), loss
