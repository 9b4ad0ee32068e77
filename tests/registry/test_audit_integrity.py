"""The alias history cannot be hidden by ordinary MLflow calls: what they do is reported.

Each test makes real moves, then tampers the way a user with plain MLflow access can (or, on the
sqlite store, the way someone with the database can), and checks what `lmforge models history`
says: the records still shown, one line per problem on stderr, exit status 3.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import mlflow
import pytest

from components.shared import audit_ledger, registry
from components.shared.errors import UserError


def three_moves(make_version, model_name) -> tuple[str, str]:
    v1, v2 = make_version(), make_version()
    registry.promote(model_name, v1)
    registry.promote(model_name, v2)
    registry.rollback(model_name)
    return v1, v2


def history_cli(model_name: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "models", "history", model_name], capture_output=True, text=True, cwd=tmp_path, timeout=120)


def ledger_of(backend: str, model_name: str) -> str:
    return audit_ledger.ledger_run_id(mlflow.MlflowClient(backend), model_name, create=False)


def test_an_intact_history_has_no_problem_and_exits_0(make_version, model_name, tmp_path):
    three_moves(make_version, model_name)
    records, problems = registry.audit(model_name)
    assert [(r["seq"], r["action"], r["state"]) for r in records] == [(1, "promote", "done"), (2, "promote", "done"), (3, "rollback", "done")] and problems == []
    res = history_cli(model_name, tmp_path)
    assert res.returncode == 0 and "damaged" not in res.stderr, res.stderr


def test_a_deleted_ledger_run_is_reported_and_its_records_still_shown(make_version, backend, model_name, tmp_path):
    three_moves(make_version, model_name)
    client, run_id = mlflow.MlflowClient(backend), ledger_of(backend, model_name)
    client.delete_run(run_id)
    try:
        res = history_cli(model_name, tmp_path)
        assert res.returncode == 3, res.stderr
        assert f"ledger run {run_id} was deleted outside LMForge" in res.stderr and f"mlflow runs restore --run-id {run_id}" in res.stderr
        assert [line.split()[0] for line in res.stdout.splitlines()[1:4]] == ["1", "2", "3"], "every record is still shown"
        with pytest.raises(UserError, match="was deleted outside LMForge.*no alias was moved"):
            registry.promote(model_name, make_version())
    finally:
        client.restore_run(run_id)
    assert registry.audit(model_name)[1] == [], "restoring the run repairs the history"


def test_a_ledger_run_marked_failed_is_reported(make_version, backend, model_name):
    three_moves(make_version, model_name)
    client, run_id = mlflow.MlflowClient(backend), ledger_of(backend, model_name)
    client.set_terminated(run_id, "FAILED")
    records, problems = registry.audit(model_name)
    assert problems == [f"the history's ledger run {run_id} was marked FAILED outside LMForge (its records are intact)"]
    assert len(records) == 3, "marking the run hides no record"


def test_a_removed_ledger_pointer_is_reported(make_version, backend, model_name):
    three_moves(make_version, model_name)
    client = mlflow.MlflowClient(backend)
    pointer = client.get_experiment_by_name(audit_ledger.pointer_name(model_name))
    client.delete_experiment_tag(pointer.experiment_id, audit_ledger.LEDGER_TAG)
    problems = registry.audit(model_name)[1]
    assert any(f"the tag {audit_ledger.LEDGER_TAG} was removed" in p for p in problems), problems
    with pytest.raises(UserError, match="the history cannot be found"):
        registry.promote(model_name, make_version())


def test_a_ledger_pointer_moved_to_another_run_leaves_the_aliases_unexplained(make_version, backend, model_name):
    v1, _ = three_moves(make_version, model_name)
    client = mlflow.MlflowClient(backend)
    pointer = client.get_experiment_by_name(audit_ledger.pointer_name(model_name))
    empty = client.create_run(pointer.experiment_id).info.run_id
    audit_ledger.quiet_terminate(client, empty, "FINISHED")
    client.set_experiment_tag(pointer.experiment_id, audit_ledger.LEDGER_TAG, empty)  # a "clean" history swapped in
    records, problems = registry.audit(model_name)
    assert records == [] and problems == [f"@champion points at version {v1} but the history records no move of it (set outside LMForge, or the history was replaced)"]


def test_an_alias_moved_off_record_is_reported(make_version, backend, model_name):
    v1, v2 = three_moves(make_version, model_name)
    v3 = make_version()
    mlflow.MlflowClient(backend).set_registered_model_alias(model_name, "challenger", v3)
    mlflow.MlflowClient(backend).set_registered_model_alias(model_name, "champion", v2)
    problems = registry.audit(model_name)[1]
    assert problems == [
        f"@challenger points at version {v3} but the history records no move of it (set outside LMForge, or the history was replaced)",
        f"@champion points at version {v2} but the history's last move of it is to version {v1} (moved outside LMForge)",
    ]


@pytest.mark.parametrize("tamper", ["delete", "edit"])
def test_a_record_removed_or_edited_in_the_database_is_reported(tamper, make_version, backend, model_name):
    if not backend.startswith("sqlite"):
        pytest.skip("edits the sqlite store's file directly")
    three_moves(make_version, model_name)
    run_id = ledger_of(backend, model_name)
    with sqlite3.connect(backend.removeprefix("sqlite:///")) as db:
        if tamper == "delete":
            db.execute("DELETE FROM params WHERE run_uuid = ? AND key = ?", (run_id, audit_ledger.record_key(2)))
        else:
            text = db.execute("SELECT value FROM params WHERE run_uuid = ? AND key = ?", (run_id, audit_ledger.record_key(2))).fetchone()[0]
            db.execute("UPDATE params SET value = ? WHERE run_uuid = ? AND key = ?", (text.replace('"forced":false', '"forced":true'), run_id, audit_ledger.record_key(2)))
    records, problems = registry.audit(model_name)
    if tamper == "delete":
        assert [r["seq"] for r in records] == [1, 3] and problems == ["record #2 is missing from the history (its outcome 'done' is there)"]
    else:
        assert records[1]["forced"] is True and problems == ["record #3 does not chain to record #2 (a record was altered)"]
