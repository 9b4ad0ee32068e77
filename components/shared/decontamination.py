"""Word n-gram overlap with the evaluation texts: what decontamination removes and validate checks.

A pretraining text is contaminated when it shares one word n-gram (n = 13 by default, as GPT-3's
decontamination, Brown et al. 2020, appendix C) with a validation or test text of the labeled set:
a model that read a test sentence during pretraining is scored on text it has seen.
clean_tokenize drops such texts and validate counts what is left; both use this module, so they
agree on what "shared" means.

Words are the lowercase `\\w+` runs of the cleaned text (clean_text already applied the Unicode
normal form), so whitespace, punctuation and case do not hide a copy. Only the evaluation texts
are indexed, as 8-byte blake2b digests (stable across processes, unlike Python's salted hash()),
so memory grows with the evaluation set, never with the corpus, and a corpus streams through.

An evaluation text shorter than n words (most review sentences are) counts as one n-gram of its
whole length, so a short test sentence copied into the corpus is still caught, when it has at
least MIN_WORDS words. Why 8: it is the shortest n used for contamination checks in the
literature (PaLM, Chowdhery et al. 2022, section 8), and an 8-word run is rare enough to be a
copy; a 3-word sentence ("a great movie") would match thousands of innocent documents.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

DEFAULT_NGRAM = 13
MIN_WORDS = 8  # eval texts shorter than this are not indexed at all (see the module docstring)
ANCHOR = 3  # words looked up before any hashing (EvalIndex)

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The text's lowercase word tokens: punctuation and whitespace only separate them."""
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int, min_words: int = MIN_WORDS) -> list[tuple[int, int]]:
    """(start, length) of every n-gram of `tokens`; a text of min_words..n-1 words is one n-gram."""
    if len(tokens) >= n:
        return [(i, n) for i in range(len(tokens) - n + 1)]
    return [(0, len(tokens))] if len(tokens) >= min_words else []


def digest(tokens: list[str]) -> bytes:
    """blake2b-8 of the n-gram's words joined by single spaces: stable across runs and machines."""
    return hashlib.blake2b(" ".join(tokens).encode(), digest_size=8).digest()


class EvalIndex:
    """The hashed n-grams of the evaluation texts; `shared(text)` counts a text's matches.

    Besides the digests it maps each n-gram's first ANCHOR words (a tuple) to the n-gram
    lengths that start with them: a corpus position whose next three words start no evaluation
    n-gram is skipped with one set lookup, and only the few that do are hashed. The anchors
    only choose where to look; the digests decide, so the result is the same either way.
    """

    def __init__(self, n: int = DEFAULT_NGRAM, min_words: int = MIN_WORDS):
        if not ANCHOR <= min_words <= n:
            raise ValueError(f"decontamination needs {ANCHOR} <= min_words ({min_words}) <= n ({n})")
        self.n, self.min_words = n, min_words
        self.digests: set[bytes] = set()
        self.anchors: dict[tuple[str, ...], set[int]] = {}
        self.texts = self.indexed = 0  # evaluation texts seen, and those long enough to index

    @classmethod
    def of(cls, texts: Iterable[str], n: int = DEFAULT_NGRAM, min_words: int = MIN_WORDS) -> EvalIndex:
        index = cls(n, min_words)
        for text in texts:
            index.add(text)
        return index

    def add(self, text: str) -> None:
        tokens = words(text)
        grams = ngrams(tokens, self.n, self.min_words)
        for start, length in grams:
            self.digests.add(digest(tokens[start : start + length]))
            self.anchors.setdefault(tuple(tokens[start : start + ANCHOR]), set()).add(length)
        self.texts += 1
        self.indexed += bool(grams)

    def __len__(self) -> int:
        """How many distinct evaluation n-grams are indexed."""
        return len(self.digests)

    def shared(self, text: str) -> int:
        """How many word windows of `text` are indexed evaluation n-grams (0: clean)."""
        if not self.digests:
            return 0
        tokens = words(text)
        keys = zip(*(tokens[k:] for k in range(ANCHOR)))  # each position's next ANCHOR words
        hits = [(i, self.anchors[key]) for i, key in enumerate(keys) if key in self.anchors]
        return sum(digest(tokens[i : i + length]) in self.digests for i, lengths in hits for length in lengths if i + length <= len(tokens))

    def stats(self) -> dict:
        return {"ngram": self.n, "min_words": self.min_words, "eval_texts": self.texts, "eval_texts_indexed": self.indexed, "eval_ngrams": len(self)}
