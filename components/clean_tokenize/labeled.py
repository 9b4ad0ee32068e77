"""The labeled sentences as model inputs: [CLS] text [SEP], cut to a length chosen from the data.

A text longer than the sequence length keeps its first and last tokens ("head_tail"): Sun et al.
2019 ("How to Fine-Tune BERT for Text Classification", section 5.3) found head+tail truncation
best on long IMDb reviews, with the first 128 and the last 382 of 510 tokens, about a quarter
head and three quarters tail: a review's verdict tends to come at its end. "head" keeps the
first tokens only, as the tokenizer's own truncation does. Which end carries the label depends on
the data (a news article says its topic in the first lines), so "auto" lets the data choose:
choose_truncation fits TF-IDF + logistic regression (ridge for numeric labels) on the train split's
token ids as each cut leaves them and keeps the cut that scores better on validation (head_tail on
ties). The test split is never read. A set whose validation texts are almost all whole keeps
head_tail unprobed: the cut could change under PROBE_MIN_CUT of its inputs.

`max_seq_len: auto` picks the smallest multiple of 8 that covers AUTO_QUANTILE of the train
split's token lengths ([CLS] and [SEP] included), capped at `max_seq_len_cap`: long enough for
almost every sentence, without padding every batch to the one outlier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.shared.inputs import cut, frame

AUTO_QUANTILE = 0.95  # share of train sentences that fit whole at max_seq_len: auto
SEQ_MULTIPLE = 8  # sequence lengths in multiples of 8 suit GPU matrix units
TRUNCATIONS = ("head_tail", "head")  # what "auto" chooses from, the default first: it wins ties
PROBE_MIN_CUT = 0.05  # auto probes only when at least this share of the validation texts is cut


def head_and_tail(text: str, window: int) -> str:
    """A text far longer than any sequence, reduced to its first and last `window` characters
    (cut at whitespace) before encoding: the tokenizer holds ~100 bytes per character it encodes,
    so one 51 MB review would take GBs. Every word is at most max_word_chars long (bounds.py), so
    a window of (longest_seq_len + 2) * (max_word_chars + 1) characters holds more words, hence
    tokens, than any cut keeps: the ids kept are exactly those of the whole text."""
    if len(text) <= 2 * window:
        return text
    head = max(text.rfind(" ", 0, window), text.rfind("\n", 0, window))
    tails = [i for i in (text.find(" ", len(text) - window), text.find("\n", len(text) - window)) if i >= 0]
    return text[: head if head > 0 else window] + " " + text[min(tails) + 1 if tails else len(text) - window :]


def choose_truncation(raw: list[list[int]], labeled: pd.DataFrame, body: int) -> dict:
    """The cut `truncation: auto` keeps, and why: {"chosen", "probe": {cut: validation score} or
    the reason it was not probed}. Each cut's train texts (token ids as words) fit the TF-IDF
    baseline of components/tasks/baselines.py, which chooses its own settings on validation; the
    score is validation accuracy (or minus the RMSE for numeric labels)."""
    from components.tasks import baselines

    split = labeled["split"].to_numpy()
    train, val = np.flatnonzero(split == "train"), np.flatnonzero(split == "validation")
    cut_share = float(np.mean([len(raw[i]) > body for i in val])) if len(val) else 0.0
    labels = labeled["label"]
    numeric = pd.api.types.is_float_dtype(labels)  # regression: ingest stores its targets as float64, class ids as integers
    if cut_share < PROBE_MIN_CUT or not any(len(raw[i]) > body for i in train):
        return {"chosen": TRUNCATIONS[0], "probe": f"not probed: {cut_share:.1%} of validation texts cut (under {PROBE_MIN_CUT:.0%})"}
    if not numeric and labels.iloc[train].nunique() < 2:
        return {"chosen": TRUNCATIONS[0], "probe": "not probed: one class in train"}
    scores = {}
    for truncation in TRUNCATIONS:
        train_docs, val_docs = ([" ".join(f"t{t}" for t in cut(raw[i], body, truncation)) for i in rows] for rows in (train, val))
        # The baselines predict a test split too; one validation text stands in, its prediction unused.
        args = (train_docs, labels.iloc[train].tolist(), val_docs, labels.iloc[val].tolist(), val_docs[:1])
        if numeric:
            scores[truncation] = -baselines.tfidf_ridge(*args)[1]["val_rmse"]
        else:
            scores[truncation] = baselines.tfidf_logreg(*args, seed=0)[1]["val_accuracy"]
    best = max(TRUNCATIONS, key=lambda t: scores[t])  # max keeps the first on ties
    return {"chosen": best, "probe": {t: round(v, 6) for t, v in scores.items()}}


def truncation_line(stats: dict) -> str:
    """How the labeled texts were cut, for the progress line: the setting, and auto's evidence."""
    if stats["truncation_setting"] != "auto":
        return stats["truncation"]
    probe = stats["truncation_probe"]
    why = probe if isinstance(probe, str) else "validation " + ", ".join(f"{t} {v:.4f}" for t, v in probe.items())
    return f"auto: {stats['truncation']}; {why}"


def auto_seq_len(lengths: list[int], cap: int) -> int:
    """The smallest multiple of SEQ_MULTIPLE >= the AUTO_QUANTILE of `lengths`, at most `cap`.

    The quantile is the inverted-CDF one: a length of the data, the smallest one that at least
    AUTO_QUANTILE of the rows do not exceed.
    """
    quantile = int(np.quantile(np.asarray(lengths), AUTO_QUANTILE, method="inverted_cdf"))
    return int(min(cap, max(SEQ_MULTIPLE, -(-quantile // SEQ_MULTIPLE) * SEQ_MULTIPLE)))


def tokenize_labeled(tokenizer, labeled: pd.DataFrame, config) -> tuple[pd.DataFrame, dict]:
    """`labeled` with `input_ids` (int32 arrays), and its length statistics for clean_report."""
    backend = tokenizer.backend_tokenizer
    cls, sep = backend.token_to_id(tokenizer.cls_token), backend.token_to_id(tokenizer.sep_token)
    window = (config.longest_seq_len + 2) * (config.max_word_chars + 1)
    raw = [e.ids for e in backend.encode_batch_fast([head_and_tail(t, window) for t in labeled["text"]], add_special_tokens=False)]
    full = np.array([len(ids) + 2 for ids in raw])  # with [CLS] and [SEP]
    train = full[(labeled["split"] == "train").to_numpy()]
    if config.max_seq_len == "auto":
        seq_len = auto_seq_len(train.tolist() if len(train) else full.tolist(), config.max_seq_len_cap)
    else:
        seq_len = config.max_seq_len
    choice = choose_truncation(raw, labeled, seq_len - 2) if config.truncation == "auto" else {"chosen": config.truncation, "probe": None}
    ids = [np.asarray(frame(r, cls, sep, seq_len, choice["chosen"]), dtype=np.int32) for r in raw]
    # tokenizer.json records the sequence length, as the tokenizer's own truncation used to leave
    # it (a raw `tokenizers` user gets head truncation there; transformers calls set their own).
    backend.enable_truncation(max_length=seq_len)
    stats = {
        "max_seq_len": seq_len,
        "max_seq_len_setting": config.max_seq_len,
        "truncation": choice["chosen"],
        "truncation_setting": config.truncation,
        "truncation_probe": choice["probe"],
        "labeled_mean_len": float(np.mean([len(i) for i in ids])),
        "labeled_train_p95_len": int(np.quantile(train, AUTO_QUANTILE, method="inverted_cdf")) if len(train) else 0,
        "labeled_truncated": int((full > seq_len).sum()),
        "labeled_truncated_frac": float((full > seq_len).mean()),
        "labeled_long_rows": int((labeled["text"].str.len() > config.max_chars).sum()),
    }
    return labeled.assign(input_ids=ids), stats
