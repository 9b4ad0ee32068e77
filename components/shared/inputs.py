"""A classifier's inputs: [CLS] text [SEP], cut to the sequence length the way training cut them.

clean_tokenize cuts the labeled texts (components/clean_tokenize/labeled.py chooses the length and
the cut); finetune records both in the classifier's config.json under INPUTS_CONFIG_KEY; wherever a
registered model predicts on raw texts (the gate's champion, gate.predict_registered) `encode` cuts
them the same way, not by the tokenizer's own head truncation: a champion trained on head_tail
inputs is scored on head_tail inputs, at its own length.
"""

from __future__ import annotations

HEAD_SHARE = 0.25  # head_tail: a quarter of the text tokens from the start, the rest from the end
INPUTS_CONFIG_KEY = "lmforge_inputs"  # {"max_seq_len": int, "truncation": "head" | "head_tail"}


def cut(ids: list[int], body: int, truncation: str) -> list[int]:
    """`ids` (text tokens, no specials) cut to `body` tokens: the head, or head and tail."""
    if len(ids) <= body:
        return ids
    head = body if truncation == "head" else int(body * HEAD_SHARE)
    return ids[:head] + ids[len(ids) - (body - head) :]


def frame(ids: list[int], cls: int, sep: int, max_seq_len: int, truncation: str) -> list[int]:
    """[CLS] text [SEP] of at most `max_seq_len` tokens: what training fed (labeled.tokenize_labeled)
    and what `encode` feeds a registered model."""
    return [cls, *cut(ids, max_seq_len - 2, truncation), sep]


def inputs_of(tokens: dict) -> dict:
    """How a classifier's inputs were cut, from clean_report.json's `tokens` section."""
    return {"max_seq_len": int(tokens["max_seq_len"]), "truncation": tokens["truncation"]}


def encode(tokenizer, texts: list[str], spec: dict) -> list[list[int]]:
    """`texts` as the classifier of `spec` (see inputs_of) was trained on them."""
    raw = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    return [frame(ids, tokenizer.cls_token_id, tokenizer.sep_token_id, spec["max_seq_len"], spec["truncation"]) for ids in raw]
