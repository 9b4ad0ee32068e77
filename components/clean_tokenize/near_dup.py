"""MinHash LSH near-duplicate removal for the streamed corpus.

rensa (Rust) computes each document's MinHash signature over its word shingles; the LSH banding is
done here, with sorted numpy arrays rather than an in-memory hash index: each band of each document
becomes one 64-bit key, and a document is a near-duplicate when one of its band keys already
occurred for an earlier document (in corpus order). That is the bucket-sort form of LSH that
large-scale dedup pipelines use; memory is `bands` x 8 bytes per document (about 80 B), not a
Python object per bucket, and the result depends only on the corpus order and the seed.
bench/near_dup.py compares rensa with datasketch on speed and recall (bench/results/near-dup.md).

Like LSH itself, no pair is verified against the exact Jaccard similarity: a pair at similarity s
becomes a candidate with probability 1 - (1 - s^r)^b, near 1 above the threshold and near 0 well
below it. Members of a chain A ~ B ~ C lose all but the first, as connected-components dedup does.
"""

from __future__ import annotations

import functools

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

RULE = "near_duplicate"
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: a standard odd multiplier for mixing


class NearDupConfig(BaseModel):
    """MinHash LSH near-duplicate removal of corpus documents (after exact duplicates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="remove corpus documents whose word shingles are near-copies of an earlier document's")
    threshold: float = Field(0.8, gt=0, lt=1, description="estimated Jaccard similarity of shingle sets above which a document counts as a copy")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations: more is more accurate and slower")
    shingle_size: int = Field(5, ge=1, le=32, description="words per shingle (5-grams, as Gopher and the BigScience ROOTS dedup use)")
    seed: int = Field(42, ge=0, description="MinHash seed: the same seed and corpus give the same removals")


@functools.cache
def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) with bands * rows <= num_perm minimising the equally weighted areas
    of false positives below `threshold` and false negatives above it (datasketch's rule)."""
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            low, high = np.linspace(0, threshold, 101), np.linspace(threshold, 1, 101)
            fp = np.trapezoid(1 - (1 - low**r) ** b, low)
            fn = np.trapezoid((1 - high**r) ** b, high)
            if fp + fn < best_err:
                best, best_err = (b, r), fp + fn
    return best


def shingles(text: str, size: int) -> list[str]:
    """The distinct lower-cased word `size`-grams of `text` (the whole text when it is shorter)."""
    words = text.lower().split()
    if len(words) <= size:
        return [" ".join(words)]
    return list({" ".join(words[i : i + size]) for i in range(len(words) - size + 1)})


class NearDupIndex:
    """Band keys of every document added, in order; `duplicates()` marks the near-copies."""

    def __init__(self, config: NearDupConfig):
        self.config = config
        self.bands, self.rows = optimal_bands(config.threshold, config.num_perm)
        self._keys: list[np.ndarray] = []  # one [n, bands] uint64 array per added batch

    def add(self, texts: list[str]) -> None:
        if not texts:
            return
        from rensa import RMinHash

        sets = [shingles(t, self.config.shingle_size) for t in texts]
        self.add_signatures(np.asarray(RMinHash.digests_from_token_sets(sets, self.config.num_perm, self.config.seed), dtype=np.uint64))

    def add_signatures(self, sig: np.ndarray) -> None:
        """Add documents by their [n, num_perm] MinHash signatures (any library's, as uint64)."""
        bands = sig[:, : self.bands * self.rows].reshape(len(sig), self.bands, self.rows)
        key = np.zeros((len(sig), self.bands), dtype=np.uint64)
        with np.errstate(over="ignore"):  # wrap-around multiplication is the point of the mix
            for j in range(self.rows):
                key = (key ^ bands[:, :, j]) * _MIX
            key ^= np.arange(self.bands, dtype=np.uint64) * _MIX  # bands never share a key space
        self._keys.append(key)

    def duplicates(self) -> np.ndarray:
        """Boolean per added document: a band key of it occurred for an earlier document."""
        if not self._keys:
            return np.zeros(0, dtype=bool)
        keys = np.concatenate(self._keys)
        unique = np.ones(len(keys), dtype=bool)
        first = np.zeros(len(keys), dtype=bool)
        for b in range(self.bands):
            _, idx = np.unique(keys[:, b], return_index=True)  # first occurrence of each key
            first[:] = False
            first[idx] = True
            unique &= first  # stays True only where the document came first in every band
        return ~unique
