"""clean_tokenize: clean the text, train a WordPiece tokenizer on the corpus, pack and tokenize.

The corpus is streamed: read, cleaned and written back chunk by chunk (cleaning.py: exact
duplicates, lengths, the optional quality rules of quality.py, decontamination, and the optional
MinHash near-duplicate rule of near_dup.py, each counted), a capped
deterministic sample of it trains the tokenizer, and a second pass tokenizes and packs it into
memory-mappable shards (packing.py). Peak memory is bounded by the chunk, shard and sample sizes,
not by the corpus. The labeled set is small and is cleaned and tokenized in memory (labeled.py),
and cleaned first: the word n-grams of its validation and test texts decide which corpus documents
are contaminated (shared/decontamination.py), and with `task_adaptive` its train texts join the
pretraining text (task_adaptive.py). The report, its metrics and the progress lines are report.py's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from components import objectives
from components.clean_tokenize.bounds import Bounds
from components.clean_tokenize.cleaning import clean_corpus, clean_table, clean_text, iter_chunks
from components.clean_tokenize.labeled import PROBE_MIN_CUT, tokenize_labeled, truncation_line
from components.clean_tokenize.near_dup import NearDupConfig
from components.clean_tokenize.packing import BlockPacker, encode, framing
from components.clean_tokenize.quality import QualityConfig
from components.clean_tokenize.removals import check_removals, removal_line
from components.clean_tokenize.report import Clock, bounds_line, decontamination_section, finish_report, metrics
from components.clean_tokenize.task_adaptive import eval_index, task_adaptive_texts
from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.decontamination import DEFAULT_NGRAM, MIN_WORDS
from components.shared.errors import UserError
from components.shared.modeling import load_tokenizer
from components.shared.tokenizer import train_wordpiece

__all__ = ["CleanTokenizeConfig", "clean_tokenize", "clean_text", "tokenizer_hash"]

EXTRA_BATCH = 1024  # task-adaptive texts tokenized per call (sentences: ~100 kB of text)


class CleanTokenizeConfig(StageConfig):
    normalization: Literal["NFC", "NFKC", "none"] = Field("NFKC", description="Unicode normal form applied first")
    lowercase: bool = Field(True, description="uncased WordPiece, as bert-base-uncased")
    min_doc_chars: int = Field(200, ge=1, description="drop corpus documents shorter than this after cleaning")
    min_chars: int = Field(3, ge=1, description="drop labeled sentences shorter than this")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="heuristic quality rules for corpus documents (Gopher/C4 style), off by default")
    near_dup: NearDupConfig = Field(default_factory=NearDupConfig, description="MinHash LSH near-duplicate removal of corpus documents, off by default")
    max_chars: int = Field(1000, ge=1, description="labeled texts longer than this are kept (their tokens truncated) and counted as tokens.labeled_long_rows")
    decontaminate_ngram: int = Field(
        DEFAULT_NGRAM, description="drop pretraining text sharing a word n-gram of this length with a validation/test text (shorter eval texts of 8+ words count whole); null or 0: off"
    )
    task_adaptive: bool = Field(False, description="add the labeled train-split texts (never validation/test) to the pretraining text, one document each")
    tokenizer_from: str | None = Field(None, description="use this checkpoint's tokenizer (dir or hub id) instead of training one; set from pretrain.init_from")
    vocab_size: int = Field(8000, ge=100, description="WordPiece vocabulary size, special tokens included")
    min_frequency: int = Field(2, ge=1, description="a merge must occur this often to enter the vocabulary")
    tokenizer_train_chars: int = Field(
        50_000_000, ge=1, description="train the tokenizer on at most about this many characters: a deterministic sample of documents (by id hash) when the corpus is larger"
    )
    block_size: int = Field(128, ge=8, description="tokens per packed pretraining block (the objective's framing + text, no padding)")
    objective: objectives.ObjectiveName = Field(
        "masked_lm",
        description="the pretraining objective the blocks are packed for: its PACKING (components/objectives) says what goes around a document; the pipeline sets it from pretrain.objective",
    )
    max_seq_len: int | Literal["auto"] = Field(
        128, description="labeled sentences are truncated to this many tokens; auto: the smallest multiple of 8 covering 95% of the train split, at most max_seq_len_cap"
    )
    max_seq_len_cap: int = Field(256, ge=8, description="the longest max_seq_len 'auto' may choose (at most pretrain.model.max_position)")
    truncation: Literal["head", "head_tail", "auto"] = Field(
        "auto",
        description=f"a labeled text over max_seq_len keeps its first tokens (head), or a quarter head and three quarters tail (head_tail, Sun et al. 2019); auto: whichever of the two a TF-IDF probe scores better on validation, head_tail when under {PROBE_MIN_CUT:.0%} of validation texts are cut",
    )
    heldout_pct: int = Field(5, ge=1, le=50, description="percent of corpus documents (by id hash) held out for perplexity")
    max_word_chars: int = Field(
        100,
        ge=8,
        le=10_000_000,
        description="a run of non-space characters longer than this is cut into pieces of this length before tokenizer training and tokenization (counted as bounds.*.words_split)",
    )
    max_doc_chars: int = Field(
        1_000_000,
        ge=1000,
        le=1_000_000_000,
        description="a corpus document longer than this becomes several, cut at a paragraph, line or space break, so memory stays bounded (counted as bounds.corpus.docs_split)",
    )
    chunk_chars: int = Field(4_000_000, ge=1, description="corpus characters read, cleaned and tokenized at a time (memory is about 100 bytes per character)")
    shard_blocks: int = Field(65536, ge=1, description="blocks per .npy shard on disk (65536 x 128 int32 tokens = 32 MiB)")
    max_labeled_removed: float = Field(0.05, ge=0, le=1, description="stop the run when one cleaning rule removes more than this share of the labeled rows (no silent loss)")
    max_corpus_removed: float = Field(0.25, ge=0, le=1, description="stop the run when one cleaning rule removes more than this share of the corpus documents")

    @field_validator("max_seq_len", mode="before")
    @classmethod
    def _tokens_or_auto(cls, value):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if value != "auto" and not (isinstance(value, (int, float)) and value >= 8):
            raise ValueError(f"max_seq_len is {value!r}: give a number of tokens (at least 8) or auto")
        return value

    @field_validator("decontaminate_ngram", mode="before")
    @classmethod
    def _ngram_or_off(cls, value):
        """null (the YAML way to say off) is kept as 0: a section reaches the stage without its
        None values (PipelineConfig.section), and a dropped None would mean the default, on."""
        if value in (None, 0):
            return 0
        if not isinstance(value, (int, float)) or value < MIN_WORDS:
            raise ValueError(f"decontaminate_ngram is {value!r}: give a word count of at least {MIN_WORDS} (13 is usual), or null to switch it off")
        return value

    @property
    def longest_seq_len(self) -> int:
        """The longest labeled sequence this config can produce (what the model's positions must cover)."""
        return self.max_seq_len_cap if self.max_seq_len == "auto" else self.max_seq_len


def clean_tokenize(raw_dir: Path, out_dir: Path, config: CleanTokenizeConfig) -> dict:
    """Clean CORPUS and LABELED from `raw_dir`; write cleaned tables, tokenizer, block shards, report.

    Two phases, which the cluster target runs as separate tasks (sharded.py): `prepare` (clean,
    train the tokenizer, tokenize the labeled set) and packing the corpus into blocks.
    """
    check_inputs(raw_dir)
    clock = Clock()
    with artifacts.staged_dir(out_dir) as tmp:
        partial = prepare(raw_dir, tmp, config, clock)
        backend = corpus_backend(tmp)
        train, heldout = pack_corpus(backend, tmp, heldout_rows(tmp / artifacts.CORPUS, config.heldout_pct), config, extra_texts(tmp))
        clock.say(f"packed {train['tokens'] + heldout['tokens']:,} tokens into {train['n_blocks'] + heldout['n_blocks']:,} blocks", rate=train["tokens"] + heldout["tokens"])
        report = finish_report(partial, train, heldout, config)
        artifacts.write_json(tmp / artifacts.CLEAN_REPORT, report)
    return metrics(report)


def prepare(raw_dir: Path, tmp: Path, config: CleanTokenizeConfig, clock: Clock) -> dict:
    """Everything but the packed blocks into `tmp`: the cleaned corpus and labeled set (with
    input_ids), the task-adaptive texts, the tokenizer. Returns the report without its block counts."""
    raw_dir = Path(raw_dir)
    # continued pretraining: the checkpoint's embeddings only know its own vocabulary. Loaded first, so
    # that a missing or wrong checkpoint fails in a second, not after the corpus is cleaned.
    checkpoint_tokenizer = load_tokenizer(config.tokenizer_from) if config.tokenizer_from else None
    bounds = {name: Bounds(config.max_word_chars, config.max_doc_chars) for name in ("corpus", "labeled")}
    raw_labeled = pd.read_parquet(raw_dir / artifacts.LABELED)
    raw_labeled = raw_labeled.assign(text=[bounds["labeled"].words(t) for t in raw_labeled["text"]])  # rows stay whole: ids and labels
    labeled, labeled_removed = clean_table(raw_labeled, config.normalization, config.min_chars, scope="split")
    clock.say(removal_line("labeled", labeled_removed, len(raw_labeled)), timed=False)
    if labeled.empty:
        raise UserError(f"no labeled sentence survived cleaning (removed: {labeled_removed}): check clean_tokenize.min_chars and the labeled file")
    check_removals("labeled", labeled_removed, len(raw_labeled), config.max_labeled_removed, "clean_tokenize.max_labeled_removed")
    index = eval_index(labeled, config.decontaminate_ngram or None)
    corpus = clean_corpus(
        raw_dir / artifacts.CORPUS,
        tmp / artifacts.CORPUS,
        config.normalization,
        config.min_doc_chars,
        config.chunk_chars,
        index,
        quality_rules=config.quality,
        near_dups=config.near_dup,
        bounds=bounds["corpus"],
    )
    clock.say(f"cleaned the corpus: {corpus['rows']:,} documents, {corpus['chars']:,} characters kept")
    corpus_in = corpus["rows"] + sum(corpus["removed"].values())  # after the bounds' splits: the rows the rules saw
    clock.say(removal_line("corpus", corpus["removed"], corpus_in), timed=False)
    clock.say(bounds_line(bounds, config), timed=False)
    if corpus["rows"] == 0:
        raise UserError(f"no corpus document survived cleaning (removed: {corpus['removed']}): lower clean_tokenize.min_doc_chars or check the corpus")
    check_removals("corpus", corpus["removed"], corpus_in, config.max_corpus_removed, "clean_tokenize.max_corpus_removed")
    adaptive, adaptive_removed = task_adaptive_texts(labeled, index) if config.task_adaptive else (None, 0)
    decontamination = decontamination_section(index, corpus, adaptive_removed, clock)
    extra = [] if adaptive is None else adaptive["text"].tolist()
    if adaptive is not None:
        adaptive.to_parquet(tmp / artifacts.TASK_ADAPTIVE, index=False)

    sample = TrainingSample(tmp / artifacts.CORPUS, config.tokenizer_train_chars / corpus["chars"], config.chunk_chars, extra)
    tokenizer = checkpoint_tokenizer if checkpoint_tokenizer is not None else train_wordpiece(sample, vocab_size=config.vocab_size, min_frequency=config.min_frequency, lowercase=config.lowercase)
    clock.say(f"loaded the tokenizer of {config.tokenizer_from}" if config.tokenizer_from else f"trained the tokenizer on {sample.chars:,} characters")

    labeled, lengths = tokenize_labeled(tokenizer, labeled, config)
    clock.say(f"tokenized {len(labeled):,} labeled texts at max_seq_len {lengths['max_seq_len']} ({config.max_seq_len}): {lengths['labeled_truncated']:,} truncated ({truncation_line(lengths)})")
    labeled.to_parquet(tmp / artifacts.LABELED, index=False)
    tokenizer.save_pretrained(tmp / artifacts.TOKENIZER_DIR)
    return {
        "removed": {"corpus": corpus["removed"], "labeled": labeled_removed},
        "rows": {"corpus": corpus["rows"], "labeled": len(labeled)},
        "decontamination": decontamination,
        "bounds": {"max_word_chars": config.max_word_chars, "max_doc_chars": config.max_doc_chars, **{k: b.counts.as_dict() for k, b in bounds.items()}},
        "task_adaptive": {"enabled": config.task_adaptive, "texts": len(extra), "removed_contaminated": adaptive_removed},
        "tokenizer_hash": tokenizer_hash(tmp / artifacts.TOKENIZER_DIR),
        "packing": packing_of(config),
        "tokens": {"vocab_size": len(tokenizer), "tokenizer_train_chars": 0 if config.tokenizer_from else sample.chars, **lengths},
    }


def packing_of(config: CleanTokenizeConfig) -> dict:
    """What the blocks put around a document, as the report records it (and the shard tasks read it)."""
    return {"objective": config.objective, **objectives.get(config.objective).PACKING}


def check_inputs(raw_dir: Path) -> None:
    """Before any output folder exists: ingest's two tables are there."""
    for name in (artifacts.CORPUS, artifacts.LABELED):
        if not (Path(raw_dir) / name).is_file():
            raise UserError(f"{Path(raw_dir) / name} is missing: run the ingest stage first")


def corpus_backend(cleaned: Path):
    """The saved tokenizer as the corpus packer uses it: without the labeled set's truncation.

    Packing always reads tokenizer.json back (one task or many, sharded.py), so every path
    tokenizes the corpus with exactly the same tokenizer."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(Path(cleaned) / artifacts.TOKENIZER_DIR / "tokenizer.json"))
    backend.no_truncation()
    return backend


def extra_texts(cleaned: Path) -> list[str]:
    """The task-adaptive texts clean_tokenize packs after the corpus (none without task_adaptive)."""
    path = Path(cleaned) / artifacts.TASK_ADAPTIVE
    return pq.read_table(path, columns=["text"]).column("text").to_pylist() if path.is_file() else []


def pack_corpus(backend, out: Path, heldout: np.ndarray, config: CleanTokenizeConfig, extra: list[str] = ()) -> tuple[dict, dict]:
    """Tokenize the cleaned corpus in `out` chunk by chunk into the train and held-out shards, one pass.

    `heldout[i]` says where row i goes; the `extra` documents (task-adaptive texts) follow the
    corpus into the train split. Returns each split's index plus its [UNK] and extra-token counts.
    """
    frame = framing(backend, packing_of(config))
    packers = [BlockPacker(out / name, config.block_size, config.shard_blocks, frame) for name in (artifacts.BLOCKS_TRAIN, artifacts.BLOCKS_HELDOUT)]
    row = 0
    for table in iter_chunks(out / artifacts.CORPUS, config.chunk_chars, columns=["text"]):
        encodings = encode(backend, table.column("text").to_pylist())
        held = heldout[row : row + len(encodings)]
        row += len(encodings)
        for packer, side in zip(packers, (False, True)):
            packer.add([e for e, h in zip(encodings, held) if h == side])
    train, before = packers[0], packers[0].tokens
    for start in range(0, len(extra), EXTRA_BATCH):
        train.add(encode(backend, list(extra[start : start + EXTRA_BATCH])))
    extra_tokens = train.tokens - before
    (train, heldout) = ({**packer.close(), "unk": packer.unk_count} for packer in packers)
    return {**train, "extra_tokens": extra_tokens}, heldout


def heldout_rows(corpus_path: Path, heldout_pct: int) -> np.ndarray:
    """Boolean per cleaned corpus row: held out for perplexity (by a hash of doc_id, stable across runs)."""
    doc_ids = pq.read_table(corpus_path, columns=["doc_id"]).column("doc_id").to_pylist()
    heldout = np.array([_bucket(d) < heldout_pct for d in doc_ids], dtype=bool)
    if heldout.all() or not heldout.any():  # tiny corpora: keep both sides non-empty
        heldout = np.arange(len(doc_ids)) == len(doc_ids) - 1
    return heldout


class TrainingSample:
    """The cleaned corpus texts the tokenizer trains on, read from Parquet on each iteration.

    With `share` < 1, a document is in the sample when a hash of its doc_id falls below `share`:
    deterministic, spread over the whole corpus, and about `share` of its characters. A
    vocabulary of a few thousand words is learned as well from 50 MB as from 1 GB, and word
    counting then costs a fixed time and memory. Re-iterable: the trainer reads the texts twice.
    The `extra` texts (task-adaptive ones) come first, all of them.
    """

    def __init__(self, path: Path, share: float, chunk_chars: int, extra: list[str] = ()):
        self.path, self.share, self.chunk_chars, self.extra = path, share, chunk_chars, extra
        self.chars = 0

    def __iter__(self) -> Iterator[str]:
        chars = sum(map(len, self.extra))
        yield from self.extra  # task-adaptive texts: few, and the very domain, so always all of them
        for table in iter_chunks(self.path, self.chunk_chars, columns=["doc_id", "text"]):
            for doc_id, text in zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist()):
                if self.share >= 1 or _unit(f"tokenizer:{doc_id}") < self.share:
                    chars += len(text)
                    yield text
        self.chars = chars


def tokenizer_hash(tokenizer_dir: Path) -> str:
    """sha256 of tokenizer.json: the vocabulary, merges and normaliser that define token ids."""
    return hashlib.sha256((Path(tokenizer_dir) / "tokenizer.json").read_bytes()).hexdigest()


def _bucket(doc_id: str) -> int:
    return int(hashlib.sha256(f"heldout:{doc_id}".encode()).hexdigest()[:8], 16) % 100


def _unit(key: str) -> float:
    """A stable pseudo-random number in [0, 1) for `key`."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32
