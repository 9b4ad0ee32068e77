"""The registry commands through the real CLI (a subprocess) against a real `mlflow server`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.shared import registry


def lmforge(tracking_uri: str, project: Path, *args: str) -> subprocess.CompletedProcess:
    # No MLFLOW_HTTP_REQUEST_* here: the CLI's own bounded retries (settings.quiet_environment) apply.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "LMFORGE_PROJECT_DIR": str(project), "LMFORGE_ACTOR": "tester@ci"}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def error_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def cells(table: str) -> list[list[str]]:
    """Rows of a printed table split on runs of two or more spaces (header first)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in table.strip().splitlines()]


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_promote_rollback_history_and_list_through_the_cli(make_version, backend, model_name, tmp_path):
    v1 = make_version(accuracy=0.7283, macro_f1=0.7277, baseline_majority_accuracy=0.5079, baseline_tfidf_accuracy=0.7731, perplexity=867.35)
    v2 = make_version(gate="failed", summary="accuracy -0.031 [-0.052, -0.010] vs champion")
    run = lambda *args: lmforge(backend, tmp_path, *args)  # noqa: E731

    refused = run("promote", model_name, v2)
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = error_lines(refused)
    assert (
        line
        == f'error: {model_name} version {v2} cannot become @champion: its gate failed (accuracy -0.031 [-0.052, -0.010] vs champion): promote a version whose gate passed, or override with --force --reason "why"'
    )
    no_reason = run("promote", model_name, v2, "--force")
    assert no_reason.returncode == 2 and error_lines(no_reason)[0].startswith('error: --force needs --reason "why"')

    ok = run("promote", model_name, v1)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{model_name}@champion: (unset) -> version {v1} (gate passed; promote #1 by tester@ci: gate passed)"
    forced = run("promote", model_name, v2, "--force", "--reason", "demo needs the new tokenizer")
    assert forced.returncode == 0 and f"version {v1} -> version {v2} FORCED (gate failed; promote #2" in forced.stdout
    back = run("rollback", model_name, "--reason", "accuracy dropped")
    assert back.returncode == 0 and back.stdout.strip() == f"{model_name}@champion: version {v2} -> version {v1} (gate passed; rollback #3 by tester@ci: accuracy dropped)"
    assert registry.champion(model_name) == v1

    history = run("models", "history", model_name)
    assert history.returncode == 0, history.stderr
    header, *rows = cells(history.stdout)
    assert header == ["#", "time (UTC)", "alias", "action", "from", "to", "gate", "forced", "actor", "reason"]
    assert [[r[0], *r[2:]] for r in rows] == [
        ["1", "champion", "promote", "-", v1, "passed", "no", "tester@ci", "gate passed"],
        ["2", "champion", "promote", v1, v2, "failed", "FORCED", "tester@ci", "demo needs the new tokenizer"],
        ["3", "champion", "rollback", v2, v1, "passed", "no", "tester@ci", "accuracy dropped"],
    ]  # fmt: skip

    listing = run("models", "list", model_name)
    assert listing.returncode == 0, listing.stderr
    header, *rows = cells(listing.stdout)
    assert header == ["model", "version", "aliases", "created (UTC)", "gate", "accuracy", "macro-F1", "majority", "TF-IDF", "perplexity", "data rev", "run"]
    assert [r[:11] for r in rows] == [
        [model_name, v1, "@champion", rows[0][3], "passed", "0.7283", "0.7277", "0.5079", "0.7731", "867.4", "01234567"],
        [model_name, v2, "-", rows[1][3], "failed", "0.7500", "-", "-", "-", "-", "01234567"],
    ]  # fmt: skip
    everything = run("models", "list")
    assert everything.returncode == 0 and sum(model_name in line for line in everything.stdout.splitlines()) == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_unknown_model_through_the_cli_is_one_line(backend, tmp_path):
    res = lmforge(backend, tmp_path, "models", "history", "no-such-model")
    assert res.returncode == 2
    assert error_lines(res) == [f"error: registered model 'no-such-model' not found at {backend}: list the models with lmforge models list"]


@pytest.mark.parametrize(
    "args", [("promote", "lmforge-sentiment", "1"), ("rollback", "lmforge-sentiment"), ("models", "list"), ("models", "history", "lmforge-sentiment")], ids=lambda a: "-".join(a[:2])
)
def test_tracking_server_down_is_one_line_and_records_nothing(args, tmp_path):
    # Nothing listens on the discard port; the subprocess timeout bounds the retries.
    res = lmforge("http://someone:hunter2@127.0.0.1:9", tmp_path, *args)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == ["error: MLflow tracking at http://***@127.0.0.1:9 failed (unreachable): start the server, or unset MLFLOW_TRACKING_URI for the local sqlite store"]
    assert list(tmp_path.iterdir()) == [], "no local store or artifacts written instead"


def test_versions_table_has_a_tfidf_column_and_a_dash_for_older_versions():
    from pipelines.registry_commands import versions_table

    row = {"model": "m", "version": "1", "aliases": ["champion"], "created": "2026-11-28 16:36", "gate": "passed", "accuracy": 0.7218,
           "macro_f1": 0.7205, "baseline_majority_accuracy": 0.5079, "baseline_tfidf_accuracy": 0.7731, "perplexity": 843.1, "data_rev": "455a7231", "run_name": "r1"}  # fmt: skip
    older = {**row, "version": "2", "aliases": [], "baseline_tfidf_accuracy": None}
    header, new_row, old_row = cells(versions_table([row, older]))
    column = header.index("TF-IDF")
    assert header[column - 1] == "majority" and (new_row[column], old_row[column]) == ("0.7731", "-")
