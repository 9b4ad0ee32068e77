"""Run names and owner locks: unique defaults, names that cannot escape a folder or be rewritten,
and one live owner per run name and per checkpoint folder (stale locks taken over)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.shared import locks, settings
from components.shared.errors import UserError
from pipelines.config import load_config
from pipelines.pipeline import arguments
from pipelines.run_names import check_run_name, kfp_local_safe, new_run_name

HOLD = "import sys, time; from components.shared import locks; locks.acquire(sys.argv[1], 'held', 'fix'); print('held', flush=True); time.sleep(120)"


@pytest.fixture
def holder():
    """A real second process holding a lock file, as a live run would; killed like `kill -9`."""
    procs = []

    def start(lock: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True, env=settings.child_environment(settings.code_dir()))
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("name", ["sentiment-v2", "lmforge-tiny-20261201-120000-a1b2c3", "A.b_c-9", "x" * 100])
def test_good_run_names_pass(name):
    assert check_run_name(name) == name


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "-starts-with-dash", "it's", 'say "hi"', "tab\there", "", "x" * 101, "name with space", "ü-umlaut"])
def test_bad_run_names_are_one_line(name):
    with pytest.raises(UserError, match="is not allowed: use 1-100 letters") as info:
        check_run_name(name)
    assert "\n" not in str(info.value)


def test_python3_in_a_run_name_is_refused_locally_only():
    with pytest.raises(UserError, match="kfp.local rewrites"):
        check_run_name("my-python3-run")
    assert check_run_name("my-python3-run", local=False) == "my-python3-run"  # a cluster run is not rewritten


def test_default_names_started_in_the_same_second_differ_and_are_valid():
    names = [new_run_name("lmforge-tiny") for _ in range(500)]
    assert len(set(names)) == 500
    assert all(check_run_name(n) == n for n in names)
    odd = new_run_name("lmforge-my preset/../python3 'x'")
    assert check_run_name(odd) == odd and "python3" not in odd


@pytest.mark.parametrize(
    "change, key",
    [
        ({"corpus": "/data/python3/corpus.jsonl"}, "ingest.corpus_path"),
        ({"labeled": "/srv/python3-data/l.csv"}, "ingest.labeled_path"),
        ({"rev": "python3-branch"}, "--data-rev"),
        ({"repo": "/repos/python3"}, "--data-repo"),
    ],
)
def test_any_argument_kfp_local_would_rewrite_is_refused_by_name(change, key, tmp_path):
    overrides = ["ingest.source=path", f"ingest.corpus_path={change.get('corpus', '/data/c.jsonl')}", f"ingest.labeled_path={change.get('labeled', '/data/l.csv')}"]
    config = load_config("tiny", overrides)
    args = arguments(config, "run-1", change.get("repo", ""), change.get("rev", ""), config.lineage("tiny"))
    with pytest.raises(UserError, match=f"^{key} .*contains 'python3', which kfp.local rewrites"):
        kfp_local_safe(args, tmp_path)
    with pytest.raises(UserError, match="project folder .*LMFORGE_PROJECT_DIR"):
        kfp_local_safe(arguments(config, "run-1", "", "", config.lineage("tiny")), tmp_path / "python3" / "local_outputs")


def test_a_live_owner_is_refused_with_its_pid_and_a_dead_ones_lock_is_taken_over(tmp_path, holder):
    lock = tmp_path / "locks" / "run-x.lock"
    proc = holder(lock)
    with pytest.raises(UserError, match=rf"^run x is in use by a live run \(pid {proc.pid} on .*\): wait") as info:
        locks.acquire(lock, "run x", "wait")
    assert "\n" not in str(info.value)
    proc.kill()  # SIGKILL: no clean-up ran, the file is still there with the dead pid
    proc.wait()
    assert json.loads(lock.read_text())["pid"] == proc.pid
    fd = locks.acquire(lock, "run x", "wait")
    try:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    finally:
        os.close(fd)
    with locks.owned(lock, "run x", "wait"):  # released by the close above: free again
        pass


def test_pretrain_refuses_a_checkpoint_folder_a_live_run_holds(cleaned_dir, tmp_path, holder):
    # Two runs of one config and data share the default folder: the second must not resume from
    # the first's in-flight checkpoint.
    from tiny_data import PRETRAIN

    from components.pretrain.pretrain import PretrainConfig, pretrain

    ckpt = tmp_path / "ckpt"
    proc = holder(ckpt / ".owner.lock")
    with pytest.raises(UserError, match=rf"checkpoint folder {ckpt} is in use by a live run \(pid {proc.pid} .*pretrain.checkpoint_dir"):
        pretrain(cleaned_dir, tmp_path / "mlm", PretrainConfig.from_params(PRETRAIN, "pretrain"), checkpoint_dir=ckpt)
    assert not (tmp_path / "mlm").exists()
