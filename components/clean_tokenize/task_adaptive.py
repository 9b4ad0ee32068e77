"""What the evaluation splits keep out of pretraining, and what the train split may add to it.

The evaluation index holds the word n-grams of the cleaned validation and test texts; cleaning
drops every corpus document that shares one (cleaning.py, rule "contaminated").

Task-adaptive pretraining (Gururangan et al. 2020, "Don't Stop Pretraining") adds the labeled
set's train-split texts, never validation or test, to the pretraining text. Each sentence is a
document of its own, in id order: packing puts [SEP] after it as after any document, so unrelated
reviews are not run together as if one text, and decontamination drops a single sentence rather
than a group of them. They go into the training blocks only (held-out perplexity measures the
corpus) and into the tokenizer's training text.
"""

from __future__ import annotations

import pandas as pd

from components.shared.decontamination import EvalIndex

EVAL_SPLITS = ("validation", "test")


def eval_index(labeled: pd.DataFrame, ngram: int | None) -> EvalIndex | None:
    """The n-grams of the cleaned validation and test texts; None when decontamination is off."""
    if ngram is None:
        return None
    return EvalIndex.of(labeled.loc[labeled["split"].isin(EVAL_SPLITS), "text"], n=ngram)


def task_adaptive_texts(labeled: pd.DataFrame, index: EvalIndex | None) -> tuple[pd.DataFrame, int]:
    """The train-split texts as corpus-shaped rows (doc_id, title, text) in id order, minus those
    sharing an n-gram with an evaluation text; and how many were removed for that."""
    train = labeled.loc[labeled["split"] == "train", ["id", "text"]].sort_values("id", kind="stable")
    keep = [index is None or not index.shared(t) for t in train["text"]]
    rows = train[keep]
    docs = pd.DataFrame({"doc_id": rows["id"].astype(str), "title": "", "text": rows["text"]}).reset_index(drop=True)
    return docs, len(train) - len(rows)
