"""clean_tokenize: clean the text, train a WordPiece tokenizer on the corpus, pack and tokenize.

Cleaning rules run in a fixed order and each reports how many rows it removed, so a surprising
drop in data is visible in the run's metrics rather than discovered in a worse model.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.modeling import load_tokenizer
from components.shared.shards import ShardWriter
from components.shared.tokenizer import train_wordpiece

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class CleanTokenizeConfig(StageConfig):
    normalization: Literal["NFC", "NFKC", "none"] = Field("NFKC", description="Unicode normal form applied first")
    lowercase: bool = Field(True, description="uncased WordPiece, as bert-base-uncased")
    min_doc_chars: int = Field(200, ge=1, description="drop corpus documents shorter than this after cleaning")
    min_chars: int = Field(3, ge=1, description="drop labeled sentences shorter than this")
    max_chars: int = Field(1000, ge=1, description="drop labeled sentences longer than this")
    tokenizer_from: str | None = Field(None, description="use this checkpoint's tokenizer (dir or hub id) instead of training one; set from pretrain.init_from")
    vocab_size: int = Field(8000, ge=100, description="WordPiece vocabulary size, special tokens included")
    min_frequency: int = Field(2, ge=1, description="a merge must occur this often to enter the vocabulary")
    block_size: int = Field(128, ge=8, description="tokens per packed pretraining block ([CLS] + text, no padding)")
    max_seq_len: int = Field(128, ge=8, description="labeled sentences are truncated to this many tokens")
    shard_blocks: int = Field(65536, ge=1, description="blocks per .npy shard on disk (65536 x 128 int32 tokens = 32 MiB)")
    heldout_pct: int = Field(5, ge=1, le=50, description="percent of corpus documents (by id hash) held out for perplexity")


def clean_tokenize(raw_dir: Path, out_dir: Path, config: CleanTokenizeConfig) -> dict:
    """Clean CORPUS and LABELED from `raw_dir`; write cleaned tables, tokenizer, blocks, report."""
    corpus, labeled = _read_inputs(Path(raw_dir))
    corpus, corpus_removed = clean_table(corpus, config, min_chars=config.min_doc_chars, max_chars=None)
    labeled, labeled_removed = clean_table(labeled, config, min_chars=config.min_chars, max_chars=config.max_chars)
    if corpus.empty:
        raise UserError(f"no corpus document survived cleaning (removed: {corpus_removed}): lower clean_tokenize.min_doc_chars or check the corpus")
    if labeled.empty:
        raise UserError(f"no labeled sentence survived cleaning (removed: {labeled_removed}): check clean_tokenize.min_chars/max_chars")

    if config.tokenizer_from:  # continued pretraining: the checkpoint's embeddings only know its own vocabulary
        tokenizer = load_tokenizer(config.tokenizer_from)
    else:
        tokenizer = train_wordpiece(corpus["text"], vocab_size=config.vocab_size, min_frequency=config.min_frequency, lowercase=config.lowercase)
    heldout = corpus["doc_id"].map(lambda d: _bucket(d) < config.heldout_pct)
    if heldout.all() or not heldout.any():  # tiny corpora: keep both sides non-empty
        heldout = pd.Series([i == len(corpus) - 1 for i in range(len(corpus))], index=corpus.index)
    train_blocks, train_tokens, unk = pack(tokenizer, corpus.loc[~heldout, "text"].tolist(), config.block_size)
    heldout_blocks, heldout_tokens, _ = pack(tokenizer, corpus.loc[heldout, "text"].tolist(), config.block_size)
    if len(train_blocks) == 0 or len(heldout_blocks) == 0:
        raise UserError(f"corpus too small for one block of {config.block_size} tokens: lower clean_tokenize.block_size or add text")

    enc = tokenizer(labeled["text"].tolist(), truncation=True, max_length=config.max_seq_len)
    labeled = labeled.assign(input_ids=[np.asarray(ids, dtype=np.int32) for ids in enc["input_ids"]])
    lengths = labeled["input_ids"].map(len)

    with artifacts.staged_dir(out_dir) as tmp:
        corpus.to_parquet(tmp / artifacts.CORPUS, index=False)
        labeled.to_parquet(tmp / artifacts.LABELED, index=False)
        for name, blocks, tokens in ((artifacts.BLOCKS_TRAIN, train_blocks, train_tokens), (artifacts.BLOCKS_HELDOUT, heldout_blocks, heldout_tokens)):
            writer = ShardWriter(tmp / name, config.block_size, config.shard_blocks)
            writer.add(blocks)
            writer.close(tokens)
        tokenizer.save_pretrained(tmp / artifacts.TOKENIZER_DIR)
        report = {
            "removed": {"corpus": corpus_removed, "labeled": labeled_removed},
            "rows": {"corpus": len(corpus), "labeled": len(labeled)},
            "tokenizer_hash": tokenizer_hash(tmp / artifacts.TOKENIZER_DIR),
            "tokens": {
                "vocab_size": len(tokenizer),
                "corpus_tokens": int(train_tokens),
                "unk_rate": float(unk / max(train_tokens, 1)),
                "block_size": config.block_size,
                "n_blocks_train": int(len(train_blocks)),
                "n_blocks_heldout": int(len(heldout_blocks)),
                "labeled_mean_len": float(lengths.mean()),
                "labeled_truncated_frac": float((lengths >= config.max_seq_len).mean()),
            },
        }
        artifacts.write_json(tmp / artifacts.CLEAN_REPORT, report)
    removed = {f"clean/{t}_removed_{rule}": n for t, rules in report["removed"].items() for rule, n in rules.items()}
    tokens = {f"clean/{k}": v for k, v in report["tokens"].items()}
    return {**removed, **tokens, "clean/corpus_docs": len(corpus), "clean/labeled_rows": len(labeled)}


def _read_inputs(raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    for name in (artifacts.CORPUS, artifacts.LABELED):
        if not (raw_dir / name).is_file():
            raise UserError(f"{raw_dir / name} is missing: run the ingest stage first")
    return pd.read_parquet(raw_dir / artifacts.CORPUS), pd.read_parquet(raw_dir / artifacts.LABELED)


def clean_text(text: str, normalization: str = "NFKC") -> str:
    """Unicode normal form, control characters out, runs of spaces collapsed, paragraphs kept."""
    if normalization != "none":
        text = unicodedata.normalize(normalization, text)
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_table(df: pd.DataFrame, config: CleanTokenizeConfig, min_chars: int, max_chars: int | None) -> tuple[pd.DataFrame, dict]:
    """Apply the rules in order; return the kept rows and {rule: rows removed}."""
    removed = {}
    df = df.assign(text=df["text"].map(lambda t: clean_text(t, config.normalization)))
    rules = [
        ("empty", lambda d: d["text"] != ""),
        ("duplicate", lambda d: ~d["text"].duplicated(keep="first")),
        ("too_short", lambda d: d["text"].str.len() >= min_chars),
        ("too_long", lambda d: d["text"].str.len() <= max_chars if max_chars else pd.Series(True, index=d.index)),
    ]
    for name, keep in rules:
        mask = keep(df)
        removed[name] = int((~mask).sum())
        df = df[mask]
    return df.reset_index(drop=True), removed


def pack(tokenizer, texts: list[str], block_size: int, chunk: int = 256) -> tuple[np.ndarray, int, int]:
    """Concatenate documents ([SEP] between them) and cut into [CLS]-prefixed blocks, no padding.

    Returns (blocks int32 [n, block_size], text tokens seen, [UNK] count). The tail shorter than
    one block is dropped: at most block_size - 1 tokens of the whole corpus.
    """
    sep, cls, unk = (tokenizer.convert_tokens_to_ids(t) for t in ("[SEP]", "[CLS]", "[UNK]"))
    pieces, n_tokens, n_unk = [], 0, 0
    for start in range(0, len(texts), chunk):
        for enc in tokenizer.backend_tokenizer.encode_batch(texts[start : start + chunk], add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int32)
            n_tokens += len(ids)
            n_unk += int((ids == unk).sum())
            pieces.append(ids)
            pieces.append(np.asarray([sep], dtype=np.int32))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    body = block_size - 1
    n = len(stream) // body
    blocks = np.empty((n, block_size), dtype=np.int32)
    blocks[:, 0] = cls
    blocks[:, 1:] = stream[: n * body].reshape(n, body)
    return blocks, n_tokens, n_unk


def tokenizer_hash(tokenizer_dir: Path) -> str:
    """sha256 of tokenizer.json: the vocabulary, merges and normaliser that define token ids."""
    return hashlib.sha256((Path(tokenizer_dir) / "tokenizer.json").read_bytes()).hexdigest()


def _bucket(doc_id: str) -> int:
    return int(hashlib.sha256(f"heldout:{doc_id}".encode()).hexdigest()[:8], 16) % 100
