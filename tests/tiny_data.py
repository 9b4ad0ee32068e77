"""The tiny real texts every tier of tests uses: film-history documents and short reviews.

A plain module (not conftest.py) so that test files can import it: with several conftest.py files
in the tree, `from conftest import ...` resolves to whichever pytest loaded first.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np

CORPUS_FILE = "corpus.jsonl"  # in text_files: id, title, text
LABELED_FILE = "labeled.csv"  # in text_files: id, text, label, split

# Sizes of the tiny chain (conftest.py runs the chain with them).
CLEAN = {"vocab_size": 500, "block_size": 32, "max_seq_len": 32, "min_doc_chars": 300}
MODEL = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
# One torch thread: a 32-wide model gains nothing from more, and on a busy 2-core machine two
# threads waiting on each other made these steps 5-50x slower.
PRETRAIN = {"model": MODEL, "max_steps": 30, "batch_size": 16, "learning_rate": 2e-3, "log_every": 10, "threads": 1}
FINETUNE = {"max_steps": 40, "batch_size": 16, "learning_rates": [5e-3], "log_every": 10, "threads": 1}  # ~2 epochs of the 400 sentences
EVALUATE = {"threads": 1}


# --- the text -------------------------------------------------------------------------------

SUBJECTS = [
    "The director",
    "The young actor",
    "Our small audience",
    "The old critic",
    "The studio",
    "The composer",
    "The screenwriter",
    "The festival jury",
    "The lead actress",
    "The camera crew",
    "The film editor",
    "A retired teacher",
    "The local newspaper",
    "The producer",
]
VERBS = [
    "praised",
    "described",
    "remembered",
    "criticised",
    "discussed",
    "admired",
    "rewrote",
    "explained",
    "questioned",
    "defended",
    "compared",
]
OBJECTS = [
    "the long winter scenes",
    "a story about two brothers",
    "the music of the final act",
    "the slow and careful pacing",
    "the history of silent cinema",
    "a wonderful performance",
    "a terrible ending",
    "the bright colours of the city",
    "the dull dialogue in the middle",
    "an excellent script",
    "the boring second half",
    "a brilliant opening sequence",
    "the moving letters between the sisters",
    "an awful sound mix",
    "the tedious flashbacks",
]
TAILS = [
    "during the first week of the festival",
    "after the premiere in the spring",
    "in a letter to the newspaper",
    "while the rain fell outside",
    "with great care and patience",
    "before the audience went home",
    "in an interview on the radio",
    "for reasons nobody could explain",
    "as the lights came up",
    "over a long dinner with friends",
    "in front of a crowded theatre",
]
TOPICS = [
    "Silent Cinema",
    "The Harbour Festival",
    "Winter Light",
    "Two Brothers",
    "The Night Train",
    "Film Criticism",
    "Sound Design",
    "The Old Theatre",
    "Documentary Film",
    "The Studio System",
]
# The sentiment words of the labeled set; the corpus uses them too, so the tokenizer trained on
# the corpus keeps each as one token.
POSITIVE = ["wonderful", "excellent", "brilliant", "great", "moving", "delightful", "superb", "charming", "lovely", "fine"]
NEGATIVE = ["terrible", "boring", "dull", "awful", "tedious", "weak", "dreadful", "clumsy", "poor", "bland"]
NOUNS = ["the plot", "the acting", "the music", "the script", "the ending", "the camera work", "the cast", "the dialogue"]
OPENERS = ["Honestly,", "I thought", "In my view", "Frankly,", "To be fair,"]
ENDINGS = [".", " from start to finish.", " and I told my friends.", " in every scene.", ", as expected."]
FILMS = ["film", "movie", "story", "script", "cast"]


def corpus_documents(n: int = 40) -> list[dict]:
    """`n` documents of film-history prose (~800 characters in three paragraphs), deterministic."""
    docs = []
    for i in range(n):
        rng = random.Random(i)
        history = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}." for _ in range(7)]
        opinions = [f"{rng.choice(OPENERS)} {rng.choice(NOUNS)} was {rng.choice(POSITIVE + NEGATIVE)}{rng.choice(ENDINGS)}" for _ in range(3)]
        text = "\n\n".join([" ".join(history[:4]), " ".join(history[4:]), " ".join(opinions)])
        docs.append({"id": f"doc{i:03d}", "title": f"{TOPICS[i % len(TOPICS)]} {i // len(TOPICS) + 1}", "text": text})
    return docs


def labeled_sentences(n: int = 400) -> list[dict]:
    """`n` short reviews, shuffled, about half positive (label 1): "A dull, weak and poor movie."

    Three sentiment words of one polarity per sentence make the label learnable by a 1-layer,
    32-wide encoder in two epochs (40 steps of 16); every text is distinct, so no sentence sits in two splits.
    """
    combos = [(words, label) for label, adjs in ((1, POSITIVE), (0, NEGATIVE)) for words in itertools.permutations(adjs, 3)]
    random.Random(1).shuffle(combos)
    rows = []
    for i, ((a, b, c), label) in enumerate(combos[:n]):
        row_id = f"s{i:04d}"
        rows.append({"id": row_id, "text": f"A {a}, {b} and {c} {FILMS[i % len(FILMS)]}.", "label": label, "split": _split(row_id)})
    return rows


# How strongly each sentiment word says it, for the regression task's target (the demo's human
# ratings run -4..+4): a sentence's score is the mean of its three words' intensities.
INTENSITY = {w: 1.0 + 2.0 * i / (len(POSITIVE) - 1) for i, w in enumerate(POSITIVE)} | {w: -1.0 - 2.0 * i / (len(NEGATIVE) - 1) for i, w in enumerate(NEGATIVE)}


def scored_sentences(n: int = 400) -> list[dict]:
    """labeled_sentences with a `score` column: the mean intensity of the three sentiment words
    (-3..+3), rounded to 3 decimals, as the demo's rt_sentences.csv carries its ratings."""
    rows = labeled_sentences(n)
    for row in rows:
        words = [w.strip(",.") for w in row["text"].split()]
        row["score"] = round(float(np.mean([INTENSITY[w] for w in words if w in INTENSITY])), 3)
    return rows


def _split(row_id: str) -> str:
    from components.shared.splits import split_of

    return split_of(row_id)


def write_text_files(root: Path, docs: list[dict], rows: list[dict]) -> Path:
    """corpus.jsonl and labeled.csv under `root`, as a user (or `lmforge data demo`) would have them."""
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    with (root / CORPUS_FILE).open("w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")
    columns = ["id", "text", "score", "label", "split"] if rows and "score" in rows[0] else ["id", "text", "label", "split"]
    pd.DataFrame(rows, columns=columns).to_csv(root / LABELED_FILE, index=False)
    return root


def path_config(root: Path, **overrides):
    """An ingest config that reads the two files under `root` directly (no DVC)."""
    from components.ingest.ingest import IngestConfig

    params = {"source": "path", "corpus_path": str(root / CORPUS_FILE), "labeled_path": str(root / LABELED_FILE), **overrides}
    return IngestConfig.from_params(params, "ingest")
