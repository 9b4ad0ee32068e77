"""bench/data_scale.py's corpus generator: deterministic, distinct documents, planted near-copies
that the near-duplicate rule catches and nothing else it removes."""

from __future__ import annotations

import itertools
import json

from tiny_data import CORPUS_FILE

from bench.data_scale import PLANT_EVERY, documents, sentence_pool
from components.clean_tokenize.near_dup import NearDupConfig, NearDupIndex


def test_generated_documents_are_deterministic_and_plant_near_copies(text_files, tmp_path):
    pool = sentence_pool(text_files / CORPUS_FILE)
    assert len(pool) > 100
    docs = list(itertools.islice(documents(pool, seed=1), 3 * PLANT_EVERY))
    assert docs == list(itertools.islice(documents(pool, seed=1), 3 * PLANT_EVERY))
    planted = [i for i, (_, _, p) in enumerate(docs) if p]
    assert planted == [PLANT_EVERY - 1, 2 * PLANT_EVERY - 1, 3 * PLANT_EVERY - 1]
    assert len({text for _, text, _ in docs}) == len(docs)  # no exact copy
    index = NearDupIndex(NearDupConfig(enabled=True))
    index.add([text for _, text, _ in docs])
    assert index.duplicates().nonzero()[0].tolist() == planted


def test_sentence_pool_reads_jsonl_paragraphs(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "One two three four five. Six seven eight nine ten.\nToo short. Eleven twelve thirteen fourteen fifteen!"}) + "\n")
    assert sentence_pool(path) == ["One two three four five.", "Six seven eight nine ten.", "Eleven twelve thirteen fourteen fifteen!"]


def test_a_finished_stage_is_reused_and_an_unfinished_one_is_not(tmp_path):
    """--reuse resumes a long size at the stage that failed: a log ending in its RESULT line stands
    for the stage; a log without one (the stage failed) means the stage runs again, as it does
    without --reuse (here a real validate child that fails on a missing folder and rewrites its log)."""
    import pytest

    from bench import data_scale

    finished, failed = tmp_path / "ingest.log", tmp_path / "validate.log"
    finished.write_text("[ingest] read 3 documents\n" + "RESULT " + json.dumps({"metrics": {"ingest/corpus_docs": 3}, "seconds": 2.5, "maxrss": 1234}) + "\n")
    failed.write_text("[validate] data validation failed\nTraceback ...\n")
    reused = data_scale.run_stage("ingest", {}, {}, finished, reuse=True)
    assert (reused["seconds"], reused["peak_rss_bytes"], reused["metrics"], reused["log"]) == (2.5, 1234, {"ingest/corpus_docs": 3}, ["[ingest] read 3 documents"])
    missing = {"cleaned": str(tmp_path / "no-such-stage-output"), "out": str(tmp_path / "validated")}
    for log, reuse in ((failed, True), (finished, False)):
        with pytest.raises(RuntimeError, match="validate failed"):
            data_scale.run_stage("validate", missing, {}, log, reuse=reuse)
        assert "RESULT " not in log.read_text() and "data validation failed" not in log.read_text()  # the child ran and wrote its own log
