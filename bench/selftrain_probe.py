"""Self-training probe of bench.recipe_probes (`python -m bench.recipe_probes selftrain RUN ...`).

Self-training (Du et al. 2021, without their retrieval): the run's fine-tuned classifier, and
separately its control, label sentences of the run's cleaned (decontaminated) corpus; the most
confident N, N/classes per class, join the train split with their predicted labels, and a fresh model
of the same kind (pretrained encoder, or random init for the control) is fine-tuned on the union,
validated as finetune does. Results: bench/results/quality-2026-12-05-probes.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.recipe_probes import CLASSIFIER, CLEANED, PRETRAINED, accuracy, fresh, probabilities, setup
from components.shared import artifacts

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(A-Z])")


def corpus_sentences(run: Path, pool: int, exclude, min_words: int = 4, max_words: int = 40) -> list[str]:
    """Up to `pool` distinct sentences of `min_words`..`max_words` words from the run's cleaned corpus,
    none equal (case aside) to a text of `exclude`; a seeded sample, in corpus order."""
    corpus = pd.read_parquet(run / CLEANED / artifacts.CORPUS, columns=["text"])
    seen, out = {t.lower() for t in exclude}, []
    for text in corpus.text:
        for sentence in SENTENCE_END.split(text):
            sentence = " ".join(sentence.split())
            if min_words <= len(sentence.split()) <= max_words and sentence.lower() not in seen:
                seen.add(sentence.lower())
                out.append(sentence)
    keep = np.sort(np.random.default_rng(0).permutation(len(out))[:pool])
    return [out[i] for i in keep]


def most_confident(probs: np.ndarray, n: int) -> np.ndarray:
    """Row indices of the `n` most confident predictions, n // classes of each predicted class."""
    chosen = []
    for c in range(probs.shape[1]):
        rows = np.flatnonzero(probs.argmax(1) == c)
        chosen.append(rows[np.argsort(-probs[rows, c], kind="stable")[: n // probs.shape[1]]])
    return np.sort(np.concatenate(chosen))


def selftrain(run: Path, seed: int, lr: float, sizes: list[int], pool: int, overrides: list[str] = ()) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from components.finetune import loop
    from components.shared import inputs
    from components.tasks import classification

    config, train, val, test, pad_id = setup(run, [f"finetune.seed={seed}", f"finetune.learning_rates=[{lr}]", *overrides])
    labeled = pd.read_parquet(run / CLEANED / artifacts.LABELED)
    classifier = run / CLASSIFIER
    spec = json.loads((classifier / "config.json").read_text())[inputs.INPUTS_CONFIG_KEY]
    texts = corpus_sentences(run, pool, labeled.text)
    unlabeled = pd.DataFrame({"text": texts, "input_ids": inputs.encode(AutoTokenizer.from_pretrained(run / PRETRAINED), texts, spec), "label": 0})
    print(f"{len(unlabeled)} corpus sentences to label", flush=True)
    result = {"seed": seed, "rate": lr, "overrides": list(overrides), "pool": len(unlabeled)}
    for name, folder in [("pretrained", classifier), ("control", classifier / "control")]:
        teacher = AutoModelForSequenceClassification.from_pretrained(folder)
        probs = probabilities(teacher, unlabeled, pad_id)
        r = {"teacher val": accuracy(probabilities(teacher, val, pad_id), val)}
        for n in sizes:
            rows = most_confident(probs, n)
            picked = unlabeled.iloc[rows]
            pseudo = picked.assign(label=probs[rows].argmax(1), id=[f"pseudo-{i}" for i in picked.index], split="train")
            union = pd.concat([train, pseudo[[c for c in train.columns if c in pseudo.columns]]], ignore_index=True)
            model, s = fresh(run, config, pad_id, union, val, f"{name} +{n}", name == "control")
            best = loop.train_run(s, lr, f"{name} +{n} pseudo")
            model.load_state_dict(best.state)
            r[f"+{n}"] = {
                "min confidence": float(probs[rows].max(1).min()),
                "val": classification.scores(model, val, pad_id)["accuracy"],
                "test": classification.scores(model, test, pad_id)["accuracy"],
                "step": best.best["step"],
            }
            print(name, n, json.dumps(r[f"+{n}"]), flush=True)
        result[name] = r
    return result
