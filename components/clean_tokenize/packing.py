"""Tokenize documents in large batches straight into int32 arrays and pack them into block shards.

The Rust tokenizer encodes a whole chunk of documents per call (in parallel when the tokenizers
library may use threads); the ids of a chunk go into one int32 array, the objective's document
separator after each document, and are cut into blocks, each opening with the objective's block
prefix if it has one (`PACKING` of components/objectives; `clean_tokenize.objective`): masked LM
[CLS] blocks with [SEP] after each document, causal LM unprefixed blocks with [SEP] as the
end-of-text token between documents. No block is padded. The tail shorter than a block is carried
into the next chunk, so the blocks are the same whatever the chunk size, and memory is one chunk
plus one shard, whatever the corpus size.

Measured on the demo corpus (8k WordPiece, 2 cores, CPU seconds of one thread, best of 5):
`encode_batch` 566k tokens/s, `encode_batch_fast` (no character offsets, which packing never
uses) 713k; turning the ids into one int32 array costs 2-3% more, about the same with
`np.fromiter` over the chained id lists (695k), per-document `np.array` + `np.concatenate`
(691k), a preallocated buffer filled by slices (683k) or one extended Python list (673k).

Threads: the tokenizers library runs encode_batch on a Rust thread pool unless the environment
sets TOKENIZERS_PARALLELISM=false; `lmforge run` and every stage (settings.quiet_environment) set
it to true unless the user already set it. Measured on a shared 2-core machine (python -m
bench.tokenization --threads 1 2): with the second core free, 2 threads packed 1.33M tokens/s
against 0.68M with 1 (1.97x); while another tenant held that core, 1.1-1.2x, and 0.75x at a load
average of 5 (again at a load average of 4.5-5.3: 170-192k tokens/s with true against 179-207k
with false, 0.94x). Export TOKENIZERS_PARALLELISM=false only on an oversubscribed host.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.shared.errors import UserError
from components.shared.shards import DTYPE, ShardWriter


def encode(backend, texts: list[str]) -> list:
    """Encodings of `texts` without special tokens: `tokenizers.Tokenizer.encode_batch_fast`."""
    return backend.encode_batch_fast(texts, add_special_tokens=False)


def token_stream(encodings: list, sep: int) -> np.ndarray:
    """The documents' ids in order with the separator `sep` after each, as one int32 array."""
    count = sum(map(len, encodings)) + len(encodings)  # len(Encoding) is free; .ids builds a list
    ids = itertools.chain.from_iterable(itertools.chain(e.ids, (sep,)) for e in encodings)
    return np.fromiter(ids, dtype=DTYPE, count=count)


@dataclass(frozen=True)
class Framing:
    """The token ids packing puts around documents: `prefix` opens every block (None: nothing),
    `sep` follows every document; `unk` is counted."""

    prefix: int | None
    sep: int
    unk: int


def framing(backend, packing: dict) -> Framing:
    """The ids of an objective's `PACKING` ({'block_prefix', 'doc_separator'}: token strings, the
    prefix may be None) in this tokenizer, and of [UNK]."""
    names = {"block_prefix": packing["block_prefix"], "doc_separator": packing["doc_separator"], "unk": "[UNK]"}
    ids = {k: backend.token_to_id(t) if t is not None else None for k, t in names.items()}
    missing = [names[k] for k, i in ids.items() if i is None and names[k] is not None]
    if missing:
        raise UserError(f"the tokenizer has no {', '.join(missing)} token: packing needs BERT's [CLS]/[SEP]/[UNK]; use a BERT-style (WordPiece) checkpoint")
    return Framing(ids["block_prefix"], ids["doc_separator"], ids["unk"])


class BlockPacker:
    """Cuts a token stream, fed chunk by chunk, into blocks (each opening with the framing's
    prefix, if any) written as shards.

    Counts the text tokens (without the separators) and the [UNK]s it packs. The tail shorter than
    a block left at `close` is dropped: at most block_size - 1 tokens of the whole split.
    """

    def __init__(self, path: Path, block_size: int, shard_blocks: int, frame: Framing):
        self.writer = ShardWriter(path, block_size, shard_blocks)
        self.block_size = block_size
        self.prefix, self.sep, self.unk = frame.prefix, frame.sep, frame.unk
        self.body = block_size - (self.prefix is not None)  # stream tokens per block
        self.tokens = self.unk_count = 0
        self._carry = np.zeros(0, dtype=DTYPE)  # always shorter than one block body

    def add(self, encodings: list) -> None:
        if encodings:
            self.add_stream(token_stream(encodings, self.sep), len(encodings))

    def add_stream(self, stream: np.ndarray, docs: int) -> None:
        """Append a token stream (documents' ids, a separator after each) holding `docs`
        separators; a stream may be fed in pieces (then `docs` of all pieces sum to its documents)."""
        if not len(stream):
            return
        self.tokens += len(stream) - docs
        self.unk_count += int(np.count_nonzero(stream == self.unk))
        if len(self._carry):
            stream = np.concatenate([self._carry, stream])
        body = self.body
        n = len(stream) // body
        blocks = np.empty((n, self.block_size), dtype=DTYPE)
        if self.prefix is None:
            blocks[:] = stream[: n * body].reshape(n, body)
        else:
            blocks[:, 0] = self.prefix
            blocks[:, 1:] = stream[: n * body].reshape(n, body)
        self.writer.add(blocks)
        self._carry = stream[n * body :].copy()  # a copy, so the chunk's array can be freed

    def close(self) -> dict:
        """Write the last shard and index.json; return the index."""
        return self.writer.close(self.tokens)


def pack_texts(backend, chunks: Iterable[list[str]], path: Path, block_size: int, shard_blocks: int, packing: dict) -> dict:
    """Tokenize and pack every chunk of documents into one split at `path` (framed as the
    objective's `packing` says); return its index."""
    packer = BlockPacker(path, block_size, shard_blocks, framing(backend, packing))
    for texts in chunks:
        packer.add(encode(backend, texts))
    return packer.close()
