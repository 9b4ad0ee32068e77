"""Count-based word vectors for the encoder's token embeddings, before masked-LM training starts.

A 2-layer encoder trained for minutes on a few million tokens stays near the unigram plateau and
leaves its embeddings close to random (bench/results/quality-2026-12-02-probes-2.md). Positive PMI
of windowed co-occurrence, factorised by a truncated SVD (Levy, Goldberg & Dagan 2015, "Improving
distributional similarity with lessons learned from word embeddings": context-distribution
smoothing 0.75, eigenvalue weighting 0.5), reads the same blocks once and costs seconds.
"""

from __future__ import annotations

import numpy as np

WINDOW = 5  # tokens either side, nearer ones weighted 1/distance (5 beat 10 in a linear probe on the demo set's validation split: bench/results/quality-2026-12-03-ppmi.md)


def initialise(model, blocks, special_ids, scale: float, window: int = WINDOW) -> dict:
    """Overwrite the token embeddings of a fresh model (each of an ELECTRA pair's) with PPMI-SVD vectors
    of `blocks`, rescaled to `scale` x initializer_range RMS; tokens the blocks never hold next to
    another (and the special tokens) keep their random rows. Returns what to log."""
    import time

    import torch

    start = time.perf_counter()
    parts = [getattr(model, name) for name in ("discriminator", "generator") if hasattr(model, name)] or [model]
    vectors: dict[int, np.ndarray] = {}
    seen = 0
    for part in parts:
        table = part.get_input_embeddings().weight
        vocab, dim = table.shape
        if dim not in vectors:
            vectors[dim] = ppmi_svd(blocks, vocab, dim, window=window, special_ids=special_ids)
        v = vectors[dim]
        rows = np.abs(v).sum(1) > 0
        v = v * (scale * part.config.initializer_range / np.sqrt((v[rows] ** 2).mean()))
        with torch.no_grad():
            table[torch.from_numpy(rows)] = torch.from_numpy(v[rows]).to(table.dtype)
        seen = int(rows.sum())
    return {"pretrain/embedding_init_s": time.perf_counter() - start, "pretrain/embedding_init_tokens": seen}


def ppmi_svd(blocks, vocab_size: int, dim: int, window: int = WINDOW, special_ids=(), seed: int = 0, weighting: str = "harmonic", smoothing: float = 0.75, eig_power: float = 0.5) -> np.ndarray:
    """(vocab_size, dim) vectors from the token-id blocks; rows of ids never seen (and `special_ids`) are zero.

    weighting: a neighbour at distance d counts 1/d ("harmonic") or 1 ("uniform"); smoothing: the
    context distribution's exponent; eig_power: vectors are U * S**eig_power. The defaults are the
    demo's; the others are there for bench/recipe_probes.py (which measured them: none won)."""
    import scipy.sparse as sp
    from sklearn.utils.extmath import randomized_svd

    ids = blocks if isinstance(blocks, np.ndarray) else blocks.take(np.arange(len(blocks)))
    counts = sp.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    for row in np.array_split(ids, max(1, ids.size // 4_000_000)):  # bounded memory for large corpora
        row = np.asarray(row)
        for off in range(1, window + 1):
            left, right = row[:, :-off].ravel(), row[:, off:].ravel()
            weight = np.full(left.size, 1.0 / off if weighting == "harmonic" else 1.0)  # harmonic: nearer neighbours count more (word2vec's dynamic window)
            pair = sp.coo_matrix((weight, (left, right)), shape=(vocab_size, vocab_size)).tocsr()
            counts = counts + pair + pair.T
    keep = np.ones(vocab_size)
    keep[list(special_ids)] = 0
    counts = sp.diags(keep) @ counts @ sp.diags(keep)
    counts = counts.tocoo()
    total = counts.sum()
    word = np.asarray(counts.sum(1)).ravel() / total
    context = np.asarray(counts.sum(0)).ravel() ** smoothing
    context /= context.sum()
    pmi = np.log(counts.data / total / (word[counts.row] * context[counts.col]))
    positive = pmi > 0
    ppmi = sp.csr_matrix((pmi[positive], (counts.row[positive], counts.col[positive])), shape=(vocab_size, vocab_size))
    u, s, _ = randomized_svd(ppmi, dim, random_state=seed)
    vectors = (u * s**eig_power).astype(np.float32)
    vectors[np.diff(ppmi.indptr) == 0] = 0  # no positive association at all: no vector (not SVD round-off)
    return vectors
