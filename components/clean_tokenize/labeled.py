"""The labeled sentences as model inputs: [CLS] text [SEP], cut to a length chosen from the data.

A text longer than the sequence length keeps its first and last tokens ("head_tail"): Sun et al.
2019 ("How to Fine-Tune BERT for Text Classification", section 5.3) found head+tail truncation
best on long IMDb reviews, with the first 128 and the last 382 of 510 tokens, about a quarter
head and three quarters tail: a review's verdict tends to come at its end. "head" keeps the
first tokens only, as the tokenizer's own truncation does.

`max_seq_len: auto` picks the smallest multiple of 8 that covers AUTO_QUANTILE of the train
split's token lengths ([CLS] and [SEP] included), capped at `max_seq_len_cap`: long enough for
almost every sentence, without padding every batch to the one outlier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

AUTO_QUANTILE = 0.95  # share of train sentences that fit whole at max_seq_len: auto
SEQ_MULTIPLE = 8  # sequence lengths in multiples of 8 suit GPU matrix units
HEAD_SHARE = 0.25  # head_tail: a quarter of the text tokens from the start, the rest from the end


def cut(ids: list[int], body: int, truncation: str) -> list[int]:
    """`ids` (text tokens, no specials) cut to `body` tokens: the head, or head and tail."""
    if len(ids) <= body:
        return ids
    head = body if truncation == "head" else int(body * HEAD_SHARE)
    return ids[:head] + ids[len(ids) - (body - head) :]


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
    ids = [np.asarray([cls, *cut(r, seq_len - 2, config.truncation), sep], dtype=np.int32) for r in raw]
    # tokenizer.json records the sequence length, as the tokenizer's own truncation used to leave
    # it (a raw `tokenizers` user gets head truncation there; transformers calls set their own).
    backend.enable_truncation(max_length=seq_len)
    stats = {
        "max_seq_len": seq_len,
        "max_seq_len_setting": config.max_seq_len,
        "truncation": config.truncation,
        "labeled_mean_len": float(np.mean([len(i) for i in ids])),
        "labeled_train_p95_len": int(np.quantile(train, AUTO_QUANTILE, method="inverted_cdf")) if len(train) else 0,
        "labeled_truncated": int((full > seq_len).sum()),
        "labeled_truncated_frac": float((full > seq_len).mean()),
        "labeled_long_rows": int((labeled["text"].str.len() > config.max_chars).sum()),
    }
    return labeled.assign(input_ids=ids), stats
