"""The sequence-classification task: batches of labeled rows, what a classifier predicts on them
and its scores, and where the random-init control sits beside the classifier. What the
fine-tuning loop, its validation and evaluate's test scoring share, so that no stage imports
another."""

from __future__ import annotations

import numpy as np
import pandas as pd

CONTROL_DIR = "control"  # the randomly initialised control classifier, beside the real one


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
    """Class predictions and mean (unweighted) cross-entropy for `rows`, in eval mode without gradients."""
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


def scores(model, rows: pd.DataFrame, pad_id: int, num_labels: int) -> dict:
    """Accuracy, macro-F1 over all `num_labels` classes (a class never predicted nor present scores
    0, as in evaluate) and the mean cross-entropy of `rows`."""
    from sklearn.metrics import f1_score

    preds, loss = predict(model, rows, pad_id)
    y = rows["label"].to_numpy()
    f1 = f1_score(y, preds, labels=list(range(num_labels)), average="macro", zero_division=0)
    return {"accuracy": float((preds == y).mean()), "macro_f1": float(f1), "loss": loss}
