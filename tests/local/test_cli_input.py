"""Hostile-but-fair input through the real CLI: one `error:` line, exit 2, nothing run or written.

Every case fails before any stage starts, so these cost a CLI start each. Most call
`pipelines.cli.main` in this process (the same entry point as `lmforge`); the first case runs
the real command in a child process, as the issue's user did.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.shared import settings
from components.shared.lineage import CONFIG_HASH_TAG
from pipelines import cli

HOLD = "import sys, time; from components.shared import locks; locks.acquire(sys.argv[1], 'held', 'fix'); print('held', flush=True); time.sleep(120)"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    return tmp_path


def lmforge(capsys, *args: str) -> tuple[int, list[str], str]:
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, [line for line in err.splitlines() if line.startswith("error:")], out + err


def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write: chmod 555, or for root (whom modes do not stop) sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if os.access("/sys/fs", os.W_OK) and not _refuses(Path("/sys/fs")):
        pytest.skip("no read-only folder to test with")
    return Path("/sys/fs")


def _refuses(folder: Path) -> bool:
    try:
        (folder / "lmforge-probe").touch()
    except OSError:
        return True
    (folder / "lmforge-probe").unlink()
    return False


def test_a_bool_for_a_step_count_is_one_line_through_the_real_command(tmp_path):
    env = {**os.environ, "LMFORGE_PROJECT_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--config", "tiny", "--set", "pretrain.max_steps=true"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: bad config (pretrain.max_steps): true is a yes/no value where a number is needed: give a number"]
    assert not (tmp_path / "local_outputs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    "name, needle",
    [
        ("../../../x", "run name '../../../x' is not allowed"),
        ("it's-mine", 'run name "it\'s-mine" is not allowed'),  # used to blame the tracking server
        ("a/b", "run name 'a/b' is not allowed"),
        ("my-python3-run", "contains 'python3', which kfp.local rewrites"),
    ],
)
def test_a_bad_run_name_is_one_line_and_writes_nothing(project, capsys, name, needle):
    rc, errors, text = lmforge(capsys, "run", "--config", "tiny", "--run-name", name)
    assert rc == 2 and len(errors) == 1 and needle in errors[0], text
    assert "MLflow tracking" not in text
    assert not (project / "local_outputs").exists() and not (project / "mlflow.db").exists()
    assert not list(project.parent.glob("x.log")) and not list(project.parent.parent.glob("x.log"))


def test_submit_checks_the_run_name_before_connecting(project, capsys, monkeypatch):
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:9")  # nothing listens: a check after connecting would say so
    rc, errors, _ = lmforge(capsys, "submit", "--config", "tiny", "--run-name", "../x")
    assert rc == 2 and len(errors) == 1 and "run name '../x' is not allowed" in errors[0]


def test_a_data_path_kfp_local_would_rewrite_is_one_line(project, capsys):
    rc, errors, _ = lmforge(capsys, "run", "--config", "tiny", "--set", "ingest.source=path", "--set", "ingest.corpus_path=/data/python3/c.jsonl", "--set", "ingest.labeled_path=/data/l.csv")
    assert rc == 2 and errors == [
        "error: ingest.corpus_path '/data/python3/c.jsonl' contains 'python3', which kfp.local rewrites into the interpreter's path: move or rename the file or folder so its path does not contain it"
    ]
    assert not (project / "local_outputs").exists()


def test_a_list_preset_with_overrides_is_one_line(project, capsys):
    preset = project / "list.yaml"
    preset.write_text("- pretrain:\n    max_steps: 5\n")
    rc, errors, _ = lmforge(capsys, "run", "--config", str(preset), "--set", "pretrain.max_steps=3")
    assert rc == 2 and len(errors) == 1 and "holds a YAML list, not a mapping of sections" in errors[0]


def test_an_unwritable_output_is_one_line(project, capsys):
    folder = unwritable(project)
    rc, errors, text = lmforge(capsys, "compile", "--config", "tiny", "--output", str(folder / "p.yaml"))
    assert rc == 2 and len(errors) == 1 and errors[0].startswith(f"error: cannot write {folder}/") and "Traceback" not in text
    rc, errors, text = lmforge(capsys, "trainjob", "--config", "gpu", "--nodes", "2", "--pvc", "shared", "--output", str(folder / "job.yaml"))
    assert rc == 2 and len(errors) == 1 and f"{folder}/job.yaml" in errors[0]


def test_an_unwritable_project_folder_is_one_line(tmp_path, monkeypatch, capsys):
    folder = unwritable(tmp_path)
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(folder))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    rc, errors, text = lmforge(capsys, "run", "--config", "tiny")
    assert rc == 2 and len(errors) == 1 and f"{folder}/local_outputs/locks" in errors[0] and "writable" in errors[0], text


def test_an_existing_run_name_with_another_config_is_refused(project, capsys):
    from components.shared import tracking
    from pipelines.config import load_config
    from pipelines.local import DATA_TAG, _same_recipe

    first = load_config("tiny")
    tracking.open_pipeline_run("sentiment-v1", first.resolved(), first.lineage("tiny"))
    rc, errors, _ = lmforge(capsys, "run", "--config", "tiny", "--set", "pretrain.max_steps=7", "--run-name", "sentiment-v1")
    assert rc == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: run name sentiment-v1 already exists with another configuration (config hash {first.hash()[:12]}")
    _same_recipe("sentiment-v1", {CONFIG_HASH_TAG: first.hash(), DATA_TAG: f"{project}@HEAD"})  # the same recipe may resume: no error
    assert not (project / "local_outputs" / "logs").exists()


def test_an_existing_run_name_on_other_data_is_refused(project, capsys):
    from components.shared import tracking
    from pipelines.config import load_config
    from pipelines.local import DATA_TAG

    config = load_config("tiny")
    run_id = tracking.open_pipeline_run("sentiment-v1", config.resolved(), config.lineage("tiny"))
    tracking.connect().MlflowClient().set_tag(run_id, DATA_TAG, f"{project}@0123abcd")  # same recipe, another data revision
    rc, errors, _ = lmforge(capsys, "run", "--config", "tiny", "--run-name", "sentiment-v1", "--data-rev", "feedbeef")
    assert rc == 2 and errors == [
        f"error: run name sentiment-v1 already exists reading other data ({project}@0123abcd; this run: {project}@feedbeef): "
        "choose a new --run-name, or give the same --data-rev and data paths to resume that run"
    ]


def test_a_run_name_a_live_run_holds_is_refused(project, capsys):
    lock = project / "local_outputs" / "locks" / "run-sentiment-v1.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True, env=settings.child_environment(settings.code_dir()))
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, errors, _ = lmforge(capsys, "run", "--config", "tiny", "--run-name", "sentiment-v1")
        assert rc == 2 and errors == [f"error: run name sentiment-v1 is in use by a live run (pid {holder.pid} on {os.uname().nodename}): wait for it to finish, or choose another --run-name"]
        from components.shared import tracking

        assert tracking.find_pipeline_run("sentiment-v1") is None  # no MLflow run opened for it
    finally:
        holder.kill()
        holder.wait()
