"""Packed token blocks on disk: a directory of .npy shards plus index.json, memory-mapped on read.

clean_tokenize writes BLOCKS_TRAIN and BLOCKS_HELDOUT with `ShardWriter`; every consumer (pretrain,
evaluate's perplexity, tests) reads them only through `open_blocks`, so a split of any size is
never loaded into RAM as a whole.

Layout of one split directory:

    shard-00000.npy   int32 [n_0, block_size]   (packed runs framed as the objective says: masked LM [CLS] + text, [SEP] after each document)
    shard-00001.npy   int32 [n_1, block_size]
    ...
    index.json        {"block_size", "n_blocks", "tokens", "shards": [{"file", "n_blocks"}, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.shared.errors import UserError

INDEX = "index.json"
SHARD = "shard-{:05d}.npy"
DTYPE = np.int32  # vocabularies stay far below 2**31; half the bytes of int64


class Blocks:
    """Read side of a split: `len()` blocks of `block_size` tokens, gathered with `take`."""

    def __init__(self, path: Path, index: dict):
        self.path, self._index = Path(path), index
        self.block_size: int = int(index["block_size"])
        self.tokens: int = int(index["tokens"])  # text tokens packed (before the objective's framing)
        self._shards = [np.load(self.path / s["file"], mmap_mode="r") for s in index["shards"]]
        counts = np.array([len(s) for s in self._shards], dtype=np.int64)
        # _starts[i] is the global index of shard i's first block; the last entry is the total.
        self._starts = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __reduce__(self):
        # Pickled (e.g. into DataLoader workers) as its path and index, re-mapped on arrival:
        # a memmap would otherwise pickle as a full in-memory copy of every shard.
        return (Blocks, (self.path, self._index))

    def take(self, idx) -> np.ndarray:
        """Blocks at the global indices `idx` (1-D, any order, repeats allowed): an int32 copy [k, block_size]."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"block index out of range [0, {len(self)}) in {self.path}")
        out = np.empty((len(idx), self.block_size), dtype=DTYPE)
        shard = np.searchsorted(self._starts, idx, side="right") - 1
        for s in np.unique(shard):
            rows = np.flatnonzero(shard == s)
            out[rows] = self._shards[s][idx[rows] - self._starts[s]]
        return out


def open_blocks(path: Path) -> Blocks:
    """Open a split directory written by `ShardWriter` (e.g. cleaned_dir / artifacts.BLOCKS_TRAIN)."""
    path = Path(path)
    if not (path / INDEX).is_file():
        raise UserError(f"{path / INDEX} is missing: rerun the clean_tokenize stage to write the packed blocks")
    index = json.loads((path / INDEX).read_text())
    blocks = Blocks(path, index)
    if len(blocks) != index["n_blocks"] or any(len(m) != s["n_blocks"] for m, s in zip(blocks._shards, index["shards"])):
        raise UserError(f"{path} does not match its {INDEX}: rerun the clean_tokenize stage")
    return blocks


class ShardWriter:
    """Write side: append blocks in order; every `shard_blocks` blocks become one .npy file.

    Memory is about two shards (the pending blocks, then their concatenation when it is saved),
    whatever the size of the split. `close` writes index.json last,
    so a directory without it is incomplete (the stage also stages the whole output dir).
    """

    def __init__(self, path: Path, block_size: int, shard_blocks: int):
        if shard_blocks < 1:
            raise ValueError("shard_blocks must be >= 1")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.block_size, self.shard_blocks = block_size, shard_blocks
        self._pending: list[np.ndarray] = []  # blocks of the shard being filled
        self._fill = 0
        self._shards: list[dict] = []

    @property
    def n_blocks(self) -> int:
        return sum(s["n_blocks"] for s in self._shards) + self._fill

    def add(self, blocks: np.ndarray) -> None:
        """Append int [k, block_size] blocks, flushing each shard as it fills."""
        blocks = np.asarray(blocks)
        if blocks.ndim != 2 or blocks.shape[1] != self.block_size:
            raise ValueError(f"expected blocks of shape [k, {self.block_size}], got {blocks.shape}")
        done = 0
        while done < len(blocks):
            n = min(self.shard_blocks - self._fill, len(blocks) - done)
            self._pending.append(blocks[done : done + n].astype(DTYPE))  # a copy: the caller may reuse its array
            self._fill += n
            done += n
            if self._fill == self.shard_blocks:
                self._flush()

    def close(self, tokens: int) -> dict:
        """Flush the last partial shard and write index.json; return the index."""
        if self._fill:
            self._flush()
        index = {"block_size": self.block_size, "n_blocks": self.n_blocks, "tokens": int(tokens), "shards": self._shards}
        (self.path / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        return index

    def _flush(self) -> None:
        name = SHARD.format(len(self._shards))
        np.save(self.path / name, np.concatenate(self._pending))
        self._shards.append({"file": name, "n_blocks": self._fill})
        self._pending, self._fill = [], 0
