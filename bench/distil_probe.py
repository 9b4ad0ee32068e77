"""Distillation and label-smoothing probe of bench.recipe_probes (`python -m bench.recipe_probes distil RUN ...`).

One fine-tuning run at one rate with the loss (1 - w) x cross-entropy + w x the cross-entropy against
a soft target: `kd` the class probabilities of TF-IDF + LR (the settings evaluate's grid chose on
validation), cross-fitted over 5 folds of train so that no train row is scored by a model that saw it;
`ls` the uniform distribution (label smoothing). Results: bench/results/quality-2026-12-04-probes.md.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np

from bench.recipe_probes import fresh, setup


def teacher_probabilities(train, val, test, folds: int = 5) -> tuple[np.ndarray, dict]:
    """TF-IDF + LR's class probabilities for each train row from a model fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold

    from components.tasks import baselines

    _, chosen = baselines.tfidf_logreg(train.text, train.label, val.text, val.label, test.text, 0)
    probs = np.zeros((len(train), train.label.nunique()))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=0).split(train.text, train.label):
        vec, x = baselines.fit_features(tuple(chosen["ngram_range"]), train.text.iloc[fit])
        model = baselines.classifier(chosen["C"], baselines.class_weight(train.label), 0).fit(x, train.label.iloc[fit])
        probs[held] = model.predict_proba(vec.transform(train.text.iloc[held]))
    return probs, {"C": chosen["C"], "ngram_range": chosen["ngram_range"], "cross_fitted_train_accuracy": float((probs.argmax(1) == train.label).mean())}


def soft_target_task(kind: str, weight: float, teacher):
    """The classification task with its loss mixed with a soft target (see the module docstring).
    The train rows carry their position (`pos`), which collate hands to the loss."""
    import torch
    import torch.nn.functional as F

    from components.tasks import classification

    rows_of = {}

    def collate(rows, pad_id):
        if "pos" in rows:
            rows_of["pos"] = torch.from_numpy(rows["pos"].to_numpy(copy=True))
        return classification.collate(rows, pad_id)

    def loss_sum(logits, labels, class_w):
        logp = F.log_softmax(logits.float(), -1)
        soft = -(teacher[rows_of["pos"]] * logp).sum(-1) if kind == "kd" else -logp.mean(-1)
        return ((1 - weight) * F.nll_loss(logp, labels, weight=class_w, reduction="none") + weight * soft).sum()

    task = types.SimpleNamespace(**{k: getattr(classification, k) for k in dir(classification) if not k.startswith("__")})
    task.collate, task.loss_sum = collate, loss_sum
    return task


def distil(run: Path, seed: int, lr: float, variants: list[str]) -> dict:
    import torch

    from components.finetune import loop
    from components.tasks import classification

    config, train, val, test, pad_id = setup(run, [f"finetune.seed={seed}", f"finetune.learning_rates=[{lr}]"])
    train = train.assign(pos=np.arange(len(train)))
    probs, teacher = teacher_probabilities(train, val, test)
    print("teacher", json.dumps(teacher), flush=True)
    result = {"seed": seed, "rate": lr, "teacher": teacher}
    for variant in variants:
        name, spec = variant.split(":")
        model, s = fresh(run, config, pad_id, train, val, variant, name == "control")
        s.task = soft_target_task(spec[:2], float(spec[2:]), torch.tensor(probs, dtype=torch.float32))
        best = loop.train_run(s, lr, variant)
        model.load_state_dict(best.state)
        result[variant] = {"val": classification.scores(model, val, pad_id)["accuracy"], "test": classification.scores(model, test, pad_id)["accuracy"], "step": best.best["step"]}
        print(variant, json.dumps(result[variant]), flush=True)
    return result
