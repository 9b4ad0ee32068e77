"""clean_tokenize in shards (the cluster fan-out): prepare, two or three shard tasks, merge, give
byte for byte what one task gives, with near-duplicates, quality rules and task-adaptive texts on."""

from __future__ import annotations

import json
import random

import pandas as pd
import pyarrow.parquet as pq
import pytest
from tiny_data import CLEAN, CORPUS_FILE, path_config, write_text_files

from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
from components.clean_tokenize.sharded import SHARD_INDEX, merge_shards, prepare_stage, shard_row_groups, tokenize_shard
from components.ingest.ingest import ingest
from components.shared import artifacts
from components.shared.errors import UserError

# chunk_chars small: the cleaned corpus has many row groups, so every shard gets some.
CONFIG = {**CLEAN, "chunk_chars": 3000, "shard_blocks": 7, "task_adaptive": True, "quality": {"enabled": True}, "near_dup": {"enabled": True}}
NEAR_COPIES = 3


@pytest.fixture(scope="module")
def raw(text_files, tmp_path_factory):
    """The tiny corpus plus NEAR_COPIES near-copies (one word in 100 changed) of its documents."""
    base = tmp_path_factory.mktemp("sharded")
    docs = [json.loads(line) for line in (text_files / CORPUS_FILE).read_text().splitlines()]
    rng = random.Random(3)
    for i in range(NEAR_COPIES):
        words = (docs[i]["text"] + " " + docs[i + 10]["text"]).split(" ")
        docs[i]["text"] = " ".join(words)  # longer originals, so one changed word keeps them near
        words[rng.randrange(len(words))] = "notably"
        docs.append({"id": f"copy{i}", "title": "", "text": " ".join(words)})
    labeled = pd.read_csv(text_files / "labeled.csv", dtype={"id": str}).to_dict("records")
    write_text_files(base / "text", docs, labeled)
    ingest(base / "raw", path_config(base / "text"))
    return base


@pytest.fixture(scope="module")
def one_task(raw):
    config = CleanTokenizeConfig.from_params(CONFIG, "clean_tokenize")
    metrics = clean_tokenize(raw / "raw", raw / "one", config)
    return raw / "one", metrics


def _sharded(raw, name: str, num_shards: int, order=None):
    config = CleanTokenizeConfig.from_params(CONFIG, "clean_tokenize")
    prepare_stage(raw / "raw", raw / f"{name}-prepared", config)
    parts = [raw / f"{name}-shard{i}" for i in range(num_shards)]
    for i, part in enumerate(parts):
        tokenize_shard(raw / f"{name}-prepared", part, i, num_shards)
    merged = raw / f"{name}-merged"
    metrics = merge_shards(raw / f"{name}-prepared", [parts[i] for i in (order or range(num_shards))], merged, config)
    return merged, metrics


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("num_shards, order", [(2, None), (3, [2, 0, 1])])
def test_shards_merged_equal_one_task_byte_for_byte(raw, one_task, num_shards, order):
    one, one_metrics = one_task
    merged, metrics = _sharded(raw, f"s{num_shards}", num_shards, order)
    assert _files(merged) == _files(one)  # blocks, index.json, tokenizer, tables, clean_report.json
    assert metrics == one_metrics
    shard_docs = [json.loads((raw / f"s{num_shards}-shard{i}" / SHARD_INDEX).read_text())["docs"] for i in range(num_shards)]
    assert all(d["train"] > 0 for d in shard_docs)  # every shard really tokenized part of the corpus


def test_the_run_removed_the_planted_near_copies(one_task):
    one, metrics = one_task
    report = artifacts.read_json(one / artifacts.CLEAN_REPORT)
    assert report["removed"]["corpus"]["near_duplicate"] == NEAR_COPIES == metrics["clean/corpus_removed_near_duplicate"]
    assert not {f"copy{i}" for i in range(NEAR_COPIES)} & set(pq.read_table(one / artifacts.CORPUS).column("doc_id").to_pylist())
    assert pq.ParquetFile(one / artifacts.CORPUS).metadata.num_row_groups >= 6


def test_row_groups_are_split_into_contiguous_covering_ranges():
    for groups, n in [(10, 3), (2, 4), (7, 7)]:
        ranges = [shard_row_groups(groups, i, n) for i in range(n)]
        assert [g for r in ranges for g in r] == list(range(groups))


def test_a_missing_shard_is_a_user_error(raw, one_task):
    config = CleanTokenizeConfig.from_params(CONFIG, "clean_tokenize")
    prepare_stage(raw / "raw", raw / "gap-prepared", config)
    tokenize_shard(raw / "gap-prepared", raw / "gap-shard0", 0, 2)
    with pytest.raises(UserError, match=r"shards \[0\] do not cover 0..1"):
        merge_shards(raw / "gap-prepared", [raw / "gap-shard0"], raw / "gap-merged", config)
    assert not (raw / "gap-merged").exists()


def test_bounds_split_documents_the_same_way_in_the_prepare_task(raw, tmp_path):
    """main's length bounds run inside prepare: documents cut at max_doc_chars (the doubled ones
    and their copies) give the same bytes from one task and from two shards."""
    config = CleanTokenizeConfig.from_params({**CONFIG, "max_doc_chars": 1000}, "clean_tokenize")
    clean_tokenize(raw / "raw", tmp_path / "one", config)
    prepare_stage(raw / "raw", tmp_path / "prepared", config)
    parts = [tmp_path / f"shard{i}" for i in range(2)]
    for i, part in enumerate(parts):
        tokenize_shard(tmp_path / "prepared", part, i, 2)
    merge_shards(tmp_path / "prepared", parts, tmp_path / "merged", config)
    assert _files(tmp_path / "merged") == _files(tmp_path / "one")
    report = artifacts.read_json(tmp_path / "one" / artifacts.CLEAN_REPORT)
    assert report["bounds"]["corpus"]["docs_split"] >= NEAR_COPIES
    assert any("#1" in d for d in pq.read_table(tmp_path / "one" / artifacts.CORPUS).column("doc_id").to_pylist())


def test_a_near_dup_rule_removing_too_much_stops_the_prepare_task_naming_its_setting(raw, tmp_path, capsys):
    """Near-duplicate removals are limited like every rule's (clean_tokenize.max_corpus_removed)."""
    config = CleanTokenizeConfig.from_params({**CONFIG, "max_corpus_removed": 0.05}, "clean_tokenize")
    with pytest.raises(UserError) as info:
        prepare_stage(raw / "raw", tmp_path / "prepared", config)
    message = str(info.value)
    assert message.startswith(f"clean_tokenize rule 'near_duplicate' (a MinHash near-copy of an earlier document) removed {NEAR_COPIES} of ")
    assert "check clean_tokenize.near_dup.threshold" in message and "clean_tokenize.max_corpus_removed (5%)" in message
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "removed from the corpus documents" in ln)
    assert f"near_duplicate {NEAR_COPIES}" in line and "punctuated_lines" in line  # quality rules counted in the same line
    assert not (tmp_path / "prepared").exists()
