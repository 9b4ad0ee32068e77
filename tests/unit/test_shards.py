"""Block shards on disk: what ShardWriter writes, open_blocks gives back, exactly and in order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.shared.errors import UserError
from components.shared.shards import INDEX, ShardWriter, open_blocks


def _reference(n: int, block_size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 30_000, size=(n, block_size), dtype=np.int32)


def _write(path, blocks: np.ndarray, shard_blocks: int, pieces: list[int]) -> dict:
    """Write `blocks` through a ShardWriter in appends of the given sizes (cycled)."""
    writer = ShardWriter(path, blocks.shape[1], shard_blocks)
    start, i = 0, 0
    while start < len(blocks):
        step = pieces[i % len(pieces)]
        writer.add(blocks[start : start + step])
        start, i = start + step, i + 1
    return writer.close(tokens=12345)


def test_round_trip_across_shard_boundaries(tmp_path):
    ref = _reference(103, 16)
    index = _write(tmp_path / "split", ref, shard_blocks=10, pieces=[1, 7, 23, 0, 4])
    assert index["n_blocks"] == 103 and [s["n_blocks"] for s in index["shards"]] == [10] * 10 + [3]
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == [INDEX] + [f"shard-{i:05d}.npy" for i in range(11)]
    assert json.loads((tmp_path / "split" / INDEX).read_text()) == index

    blocks = open_blocks(tmp_path / "split")
    assert len(blocks) == 103 and blocks.block_size == 16 and blocks.tokens == 12345
    whole = blocks.take(np.arange(len(blocks)))
    assert whole.dtype == np.int32 and np.array_equal(whole, ref)


def test_take_random_indices_equals_the_concatenated_reference(tmp_path):
    ref = _reference(257, 8, seed=1)
    _write(tmp_path / "split", ref, shard_blocks=32, pieces=[50])
    blocks = open_blocks(tmp_path / "split")
    rng = np.random.default_rng(2)
    for k in (1, 5, 64, 500):  # 500 > len: repeats, every shard, any order
        idx = rng.integers(0, len(ref), size=k)
        assert np.array_equal(blocks.take(idx), ref[idx])
    assert np.array_equal(blocks.take([256, 0, 31, 32, 32]), ref[[256, 0, 31, 32, 32]])
    assert blocks.take(np.array([], dtype=np.int64)).shape == (0, 8)


def test_take_returns_a_writable_copy(tmp_path):
    ref = _reference(20, 4)
    _write(tmp_path / "split", ref, shard_blocks=8, pieces=[20])
    blocks = open_blocks(tmp_path / "split")
    got = blocks.take([3])
    got[:] = -1
    assert np.array_equal(blocks.take([3]), ref[[3]])


def test_take_out_of_range_raises(tmp_path):
    _write(tmp_path / "split", _reference(5, 4), shard_blocks=2, pieces=[5])
    blocks = open_blocks(tmp_path / "split")
    for bad in ([5], [-1], [0, 7]):
        with pytest.raises(IndexError, match="out of range"):
            blocks.take(bad)


def test_a_missing_index_names_the_stage_to_rerun(tmp_path):
    (tmp_path / "split").mkdir()
    with pytest.raises(UserError, match="index.json is missing: rerun the clean_tokenize stage"):
        open_blocks(tmp_path / "split")


def test_an_index_that_disagrees_with_its_shards_is_refused(tmp_path):
    _write(tmp_path / "split", _reference(9, 4), shard_blocks=4, pieces=[9])
    index = json.loads((tmp_path / "split" / INDEX).read_text())
    index["shards"][0]["n_blocks"] = 3
    (tmp_path / "split" / INDEX).write_text(json.dumps(index))
    with pytest.raises(UserError, match="does not match"):
        open_blocks(tmp_path / "split")


def test_writer_refuses_blocks_of_the_wrong_width(tmp_path):
    writer = ShardWriter(tmp_path / "split", 8, 4)
    with pytest.raises(ValueError, match=r"\[k, 8\]"):
        writer.add(np.zeros((2, 7), dtype=np.int32))
