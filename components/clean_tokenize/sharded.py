"""clean_tokenize as several tasks, for the cluster target: prepare, tokenize shards, merge.

    prepare           clean, train the tokenizer once, tokenize the labeled set   (one task)
    tokenize_shard    token streams of a contiguous range of the corpus's row groups  (N tasks)
    merge_shards      the streams in shard order cut into blocks, the report       (one task)

The merged output is byte-identical to `clean_tokenize` in one task (tests/unit/test_sharded.py):
the tokenizer is trained once, before any shard tokenizes, from the same deterministic sample;
a shard writes each split's token stream (the objective's separator after each document, as
prepare's report records the packing), not blocks, because blocks run across document boundaries; and the merge feeds the streams, in shard order, through the
same BlockPacker one task uses, then packs the task-adaptive texts after them as one task does.
The held-out side of each row is decided once, in prepare, over the whole corpus.

Tokenizing is the part that scales with the corpus (cleaning is one pass too, but near-duplicate
and exact-duplicate decisions need every document, so it stays in one task). Local runs keep the
single `clean_tokenize` task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from components.clean_tokenize.clean_tokenize import (
    EXTRA_BATCH,
    CleanTokenizeConfig,
    check_inputs,
    corpus_backend,
    extra_texts,
    heldout_rows,
    prepare,
)
from components.clean_tokenize.packing import BlockPacker, encode, framing, token_stream
from components.clean_tokenize.report import Clock, finish_report, metrics
from components.shared import artifacts
from components.shared.errors import UserError
from components.shared.shards import DTYPE

PARTIAL = "clean_report.partial.json"  # prepare's report, completed by the merge
HELDOUT_ROWS = "heldout_rows.npy"  # bool per cleaned corpus row
SPLITS = {"train": artifacts.BLOCKS_TRAIN, "heldout": artifacts.BLOCKS_HELDOUT}
SHARD_INDEX = "shard.json"  # {shard, num_shards, splits: {train: {docs, file}, heldout: ...}}
READ_TOKENS = 1 << 24  # tokens of a stream packed at a time by the merge (64 MiB)


def prepare_stage(raw_dir: Path, out_dir: Path, config: CleanTokenizeConfig) -> dict:
    """The prepare task: everything of clean_tokenize but the blocks, plus the held-out rows."""
    check_inputs(raw_dir)
    with artifacts.staged_dir(out_dir) as tmp:
        partial = prepare(raw_dir, tmp, config, Clock())
        np.save(tmp / HELDOUT_ROWS, heldout_rows(tmp / artifacts.CORPUS, config.heldout_pct))
        artifacts.write_json(tmp / PARTIAL, partial)
    return {"clean/corpus_docs": partial["rows"]["corpus"], "clean/labeled_rows": partial["rows"]["labeled"]}


def shard_row_groups(num_groups: int, shard: int, num_shards: int) -> range:
    """The contiguous row groups of shard `shard`: every group in exactly one shard, in order."""
    return range(num_groups * shard // num_shards, num_groups * (shard + 1) // num_shards)


def tokenize_shard(prepared_dir: Path, out_dir: Path, shard: int, num_shards: int) -> dict:
    """Token streams of shard `shard` of `num_shards` of the prepared corpus, one file per split."""
    prepared_dir = Path(prepared_dir)
    if not 0 <= shard < num_shards:
        raise UserError(f"shard {shard} is not in [0, {num_shards}): the pipeline passes shard indices 0..num_shards-1")
    backend = corpus_backend(prepared_dir)
    sep = framing(backend, artifacts.read_json(prepared_dir / PARTIAL)["packing"]).sep
    heldout = np.load(prepared_dir / HELDOUT_ROWS)
    corpus = pq.ParquetFile(prepared_dir / artifacts.CORPUS, pre_buffer=False)
    groups = shard_row_groups(corpus.metadata.num_row_groups, shard, num_shards)
    row = sum(corpus.metadata.row_group(g).num_rows for g in range(groups.start))
    docs = dict.fromkeys(SPLITS, 0)
    with artifacts.staged_dir(out_dir) as tmp:
        files = {name: (tmp / f"{name}.int32").open("wb") for name in SPLITS}
        for g in groups:  # one row group is one cleaning chunk (about chunk_chars characters)
            encodings = encode(backend, corpus.read_row_group(g, columns=["text"]).column("text").to_pylist())
            held = heldout[row : row + len(encodings)]
            row += len(encodings)
            for name, side in (("train", False), ("heldout", True)):
                part = [e for e, h in zip(encodings, held) if h == side]
                if part:
                    token_stream(part, sep).tofile(files[name])
                docs[name] += len(part)
        for f in files.values():
            f.close()
        index = {"shard": shard, "num_shards": num_shards, "row_groups": [groups.start, groups.stop], "docs": docs}
        artifacts.write_json(tmp / SHARD_INDEX, index)
    return {"clean/shard": shard, **{f"clean/shard_{k}_docs": v for k, v in docs.items()}}


def merge_shards(prepared_dir: Path, shard_dirs: list[Path], out_dir: Path, config: CleanTokenizeConfig) -> dict:
    """Pack the shards' streams in shard order into blocks; write the output one task would."""
    prepared_dir = Path(prepared_dir)
    shards = _ordered(shard_dirs)
    clock = Clock()
    with artifacts.staged_dir(out_dir) as tmp:
        for item in prepared_dir.iterdir():
            if item.name in (PARTIAL, HELDOUT_ROWS):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        backend = corpus_backend(prepared_dir)
        frame = framing(backend, artifacts.read_json(prepared_dir / PARTIAL)["packing"])  # what the shards were cut for
        packers = {name: BlockPacker(tmp / SPLITS[name], config.block_size, config.shard_blocks, frame) for name in SPLITS}
        for path, index in shards:
            for name, packer in packers.items():
                stream = np.memmap(path / f"{name}.int32", dtype=DTYPE, mode="r") if (path / f"{name}.int32").stat().st_size else np.zeros(0, DTYPE)
                for start in range(0, len(stream), READ_TOKENS):  # the shard's documents counted with its first piece
                    packer.add_stream(np.asarray(stream[start : start + READ_TOKENS]), index["docs"][name] if start == 0 else 0)
        train, before = packers["train"], packers["train"].tokens
        extra = extra_texts(prepared_dir)
        for start in range(0, len(extra), EXTRA_BATCH):
            train.add(encode(backend, extra[start : start + EXTRA_BATCH]))
        extra_tokens = train.tokens - before
        train_index, heldout_index = ({**packers[n].close(), "unk": packers[n].unk_count} for n in SPLITS)
        clock.say(f"merged {len(shards)} shards: {train_index['n_blocks'] + heldout_index['n_blocks']:,} blocks")
        report = finish_report(artifacts.read_json(prepared_dir / PARTIAL), {**train_index, "extra_tokens": extra_tokens}, heldout_index, config)
        artifacts.write_json(tmp / artifacts.CLEAN_REPORT, report)
    return metrics(report)


def _ordered(shard_dirs: list[Path]) -> list[tuple[Path, dict]]:
    """The shard outputs sorted by shard index; every index of 0..num_shards-1 exactly once."""
    shards = []
    for d in map(Path, shard_dirs):
        if not (d / SHARD_INDEX).is_file():
            raise UserError(f"{d / SHARD_INDEX} is missing: rerun the clean_tokenize shard task that wrote {d}")
        shards.append((d, json.loads((d / SHARD_INDEX).read_text())))
    shards.sort(key=lambda s: s[1]["shard"])
    found = [s[1]["shard"] for s in shards]
    expected = list(range(shards[0][1]["num_shards"])) if shards else [0]
    if found != expected:
        raise UserError(f"clean_tokenize shards {found} do not cover 0..{len(expected) - 1} exactly once: rerun the shard tasks")
    return shards
