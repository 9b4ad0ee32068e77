"""What the sequence tasks share (not a task itself): a head on the pretrained encoder, batches
of labeled rows, and the no-gradient prediction loop. Classification and regression differ only
in the head's width, the target's dtype and how logits become predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.shared.errors import UserError

CONTROL_DIR = "control"  # the randomly initialised control model, beside the real one


def collate(rows: pd.DataFrame, pad_id: int, label_dtype=np.int64) -> dict:
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
        batch["labels"] = torch.from_numpy(rows["label"].to_numpy(dtype=label_dtype, copy=True))
    return batch


def to_device(batch: dict, model) -> dict:
    """The batch's tensors on the model's device (a no-op on the CPU)."""
    device = next(model.parameters()).device
    return batch if device.type == "cpu" else {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def predict(model, rows: pd.DataFrame, pad_id: int, batch_size: int, collate_fn, from_logits) -> tuple[np.ndarray, float]:
    """Predictions (`from_logits` of each batch's logits) and the mean (unweighted) loss the model
    computes for `rows`, in eval mode without gradients."""
    import torch

    model.eval()
    preds, losses = [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            out = model(**to_device(collate_fn(rows.iloc[start : start + batch_size], pad_id), model))
            preds.append(from_logits(out.logits))
            losses.append(out.loss.item() * min(batch_size, len(rows) - start))
    return np.concatenate(preds), float(sum(losses) / max(len(rows), 1))


def build_model(pretrained_dir: Path, config, head: dict, random_init: bool = False):
    """An AutoModelForSequenceClassification (`head`: num_labels, id2label, problem_type, ...) on
    the pretrained encoder, or of its shape from random weights (the control), with
    `config.pooling` applied to the fresh pooler."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "some weights were not used / newly initialized": expected, the MLM head is dropped
    if random_init:
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(pretrained_dir, **head))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(pretrained_dir, **head)
    if config.pooling == "cls":
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is None or not isinstance(getattr(pooler, "dense", None), torch.nn.Linear):
            raise UserError(f"finetune.pooling=cls needs a BERT-style pooler (dense + tanh), which {type(model).__name__} lacks: set finetune.pooling=pooler")
        with torch.no_grad():  # tanh([CLS]) at the start: the head sees the pretrained encoder's own [CLS] state
            pooler.dense.weight.copy_(torch.eye(pooler.dense.in_features))
            pooler.dense.bias.zero_()
    return model


def load_model(model_dir: Path):
    """A fine-tuned model as finetune saved it."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model_dir)
