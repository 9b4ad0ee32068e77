"""A pipeline run whose process died of `kill -9` is marked KILLED by the next run, not left RUNNING."""

from __future__ import annotations

import os

from components.shared import locks, tracking
from pipelines.local import END_REASON_TAG, run_lock, settle_dead_runs


def _status(client, run_id: str) -> str:
    return client.get_run(run_id).info.status


def test_only_runs_whose_lock_is_free_are_marked_killed_and_a_resumed_one_runs_again(tracking_uri, tmp_path):
    client = tracking.connect().MlflowClient()
    dead, live, elsewhere = (tracking.parent_run_id(name) for name in ("run-dead", "run-live", "run-elsewhere"))
    for name in ("run-dead", "run-live"):
        run_lock(tmp_path, name).parent.mkdir(parents=True, exist_ok=True)
        run_lock(tmp_path, name).touch()  # what a local run leaves behind; the flock died with it
    fd = locks.acquire(run_lock(tmp_path, "run-live"), "run name run-live", "")  # a live owner
    try:
        assert settle_dead_runs(tmp_path) == ["run-dead"]
    finally:
        os.close(fd)
    assert _status(client, dead) == "KILLED" and "kill -9" in client.get_run(dead).data.tags[END_REASON_TAG]
    assert _status(client, live) == "RUNNING"  # its owner holds the lock
    assert _status(client, elsewhere) == "RUNNING"  # no lock file here: started on a cluster or in another project
    assert settle_dead_runs(tmp_path) == ["run-live"]  # its owner is gone now

    assert tracking.open_pipeline_run("run-dead", {"pretrain": {}}, {}) == dead  # the same name resumes the same run
    assert _status(client, dead) == "RUNNING"
