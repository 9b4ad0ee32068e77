"""The append-only store behind `lmforge models history`: one *ledger* run per registered model.

Why a ledger run and not one run per record (the first design): an ordinary client hides a run
from every search with `delete_run` or `set_terminated(..., "FAILED")`, and nothing then says a
record is missing. Here every record of a model is a *param* of one run, so:

- a record cannot be changed or removed through MLflow (a logged param is immutable, and MLflow
  has no call that deletes one); two writers claiming the same sequence number collide on the
  params table's primary key (run, key): exactly one wins, on sqlite, Postgres and through a
  `mlflow server` alike. That compare-and-set is what serialises alias moves (registry.py);
- records are read by the ledger's run id (`get_run` returns a deleted run and its params too),
  so `delete_run`/`delete_experiment`/`set_terminated` hide nothing: they are reported;
- sequence numbers are checked on read (a gap is reported) and each record carries the sha256 of
  the one before (a record edited in the database breaks the chain, and that is reported).

Keys: `r.000001` holds record 1 as canonical JSON; `s.000001` its outcome, written once:
"done" (the alias moved) or "failed" (it did not). A record without an outcome is *pending*:
its move is in flight, or its writer died (registry.py settles it after a lease).

Which run is a model's ledger is decided once, atomically: the first writer creates its run and
then the experiment `lmforge-registry-audit.<model>` with the run id as a tag in the same call;
experiment names are unique, so a concurrent second writer's creation fails and it adopts the
winner's ledger. What an ordinary client can still do is listed in the README (reliability).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass, field

from components.shared import settings, tracking

AUDIT_EXPERIMENT = "lmforge-registry-audit"
LEDGER_TAG = "lmforge.audit.ledger"  # on the pointer experiment: the ledger's run id
MODEL_TAG, KIND_TAG = "lmforge.audit.model", "lmforge.audit.kind"
OUTCOMES = ("done", "failed")


@dataclass
class Ledger:
    """A model's records as read, oldest first, with what the read found wrong."""

    run_id: str | None
    records: list[dict] = field(default_factory=list)  # each: the record's fields + seq, state, hash
    problems: list[str] = field(default_factory=list)  # integrity problems, one line each
    writable: bool = True  # False when the ledger run is deleted: moves are refused

    @property
    def head(self) -> dict | None:
        return self.records[-1] if self.records else None


def pointer_name(model_name: str) -> str:
    return f"{AUDIT_EXPERIMENT}.{model_name}"


def record_key(seq: int) -> str:
    return f"r.{seq:06d}"


def outcome_key(seq: int) -> str:
    return f"s.{seq:06d}"


def canonical(record: dict) -> str:
    """The exact text stored (and hashed) for a record."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def audit_experiment(client) -> str:
    """The id of the experiment holding every ledger run, created on first use."""
    return tracking.experiment_id(client, AUDIT_EXPERIMENT, "the alias history", tags={"lmforge.purpose": "append-only history of alias moves"})


def ledger_run_id(client, model_name: str, *, create: bool) -> str | None:
    """The model's ledger run id; with `create`, make one if the model has none (race-safe)."""
    from mlflow.exceptions import MlflowException

    pointer = client.get_experiment_by_name(pointer_name(model_name))
    if pointer is not None or not create:
        return pointer.tags.get(LEDGER_TAG) if pointer is not None else None
    exp_id = audit_experiment(client)
    run = client.create_run(exp_id, run_name=f"history of {model_name}", tags={MODEL_TAG: model_name, KIND_TAG: "ledger"})
    quiet_terminate(client, run.info.run_id, "FINISHED")  # a ledger is not a job: FINISHED, yet still appendable
    try:
        client.create_experiment(pointer_name(model_name), artifact_location=settings.artifact_location(), tags={LEDGER_TAG: run.info.run_id, MODEL_TAG: model_name})
        return run.info.run_id
    except MlflowException:  # a concurrent first move won: adopt its ledger, drop ours (it holds nothing)
        with contextlib.suppress(Exception):
            client.delete_run(run.info.run_id)
        pointer = client.get_experiment_by_name(pointer_name(model_name))
        if pointer is None:
            raise
        return pointer.tags.get(LEDGER_TAG)


def read(client, model_name: str) -> Ledger:
    """Every record of the model's ledger, verified: contiguous sequence numbers, each record
    chained to the one before, the ledger run neither deleted nor marked failed."""
    from mlflow.exceptions import MlflowException

    pointer = client.get_experiment_by_name(pointer_name(model_name))
    if pointer is None:
        return Ledger(None)  # no move recorded yet
    run_id = pointer.tags.get(LEDGER_TAG)
    ledger = Ledger(run_id)
    if pointer.lifecycle_stage != "active":
        ledger.problems.append(f"the history's pointer experiment {pointer.name!r} was deleted outside LMForge: restore it with mlflow experiments restore --experiment-id {pointer.experiment_id}")
    if not run_id:
        ledger.problems.append(f"the tag {LEDGER_TAG} was removed from the experiment {pointer.name!r}: the history cannot be found; set it back to the ledger run's id")
        ledger.writable = False
        return ledger
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        ledger.problems.append(f"the history's ledger run {run_id} is gone from the tracking store (permanently deleted, e.g. by mlflow gc): every record is lost")
        ledger.writable = False
        return ledger
    if run.info.lifecycle_stage != "active":
        exp = client.get_experiment(run.info.experiment_id)
        if exp.lifecycle_stage != "active":  # deleting an experiment deletes its runs; restoring it restores them
            ledger.problems.append(
                f"the MLflow experiment {exp.name!r} (the alias history) is deleted (its records are intact): restore it with mlflow experiments restore --experiment-id {exp.experiment_id}"
            )
        else:
            ledger.problems.append(f"the history's ledger run {run_id} was deleted outside LMForge (its records are intact): restore it with mlflow runs restore --run-id {run_id}")
        ledger.writable = False
    if run.info.status != "FINISHED":
        ledger.problems.append(f"the history's ledger run {run_id} was marked {run.info.status} outside LMForge (its records are intact)")
    ledger.records, problems = _verify(run.data.params)
    ledger.problems += problems
    return ledger


def _verify(params: dict) -> tuple[list[dict], list[str]]:
    """Parse and check the records: one line per gap, unreadable record or broken link."""
    texts = {int(k[2:]): v for k, v in params.items() if k.startswith("r.") and k[2:].isdigit()}
    outcomes = {int(k[2:]): v for k, v in params.items() if k.startswith("s.") and k[2:].isdigit()}
    problems, records, prev_hash = [], [], ""
    top = max([*texts, *outcomes], default=0)
    for seq in range(1, top + 1):
        if seq not in texts:
            problems.append(
                f"record #{seq} is missing from the history (its outcome {outcomes.get(seq, 'unknown')!r} is there)"
                if seq in outcomes
                else f"record #{seq} is missing from the history (a gap before #{top})"
            )
            prev_hash = None
            continue
        try:
            record = json.loads(texts[seq])
            ok = isinstance(record, dict) and record.get("seq") == seq
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"record #{seq} is unreadable or numbered wrongly (tampered)")
            prev_hash = None
            continue
        if prev_hash is not None and record.get("prev", "") != prev_hash:
            problems.append(f"record #{seq} does not chain to record #{seq - 1} (a record was altered)")
        prev_hash = digest(texts[seq])
        state = outcomes.get(seq, "pending")
        if state not in (*OUTCOMES, "pending"):
            problems.append(f"record #{seq} has an unknown outcome {state!r} (tampered)")
        records.append({**record, "state": state, "hash": prev_hash})
    return records, problems


def claim(client, run_id: str, record: dict) -> bool:
    """Append `record` as number record["seq"] if no one holds that number: True if it is ours."""
    return _write_once(client, run_id, record_key(record["seq"]), canonical(record))


def settle(client, run_id: str, seq: int, outcome: str) -> str:
    """Write record `seq`'s outcome once; returns the outcome that stands (ours, or an earlier one)."""
    assert outcome in OUTCOMES
    if _write_once(client, run_id, outcome_key(seq), outcome):
        return outcome
    return client.get_run(run_id).data.params[outcome_key(seq)]


def _write_once(client, run_id: str, key: str, value: str) -> bool:
    """log_param as a compare-and-set: False when the key already holds another value."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_param(run_id, key, value)
        return True
    except MlflowException:
        held = client.get_run(run_id).data.params.get(key)
        if held is None:
            raise  # a real failure, not a lost race
        return held == value


def quiet_terminate(client, run_id: str, status: str) -> None:
    """set_terminated prints a link to the run against a server; the commands print the move."""
    with contextlib.redirect_stdout(io.StringIO()):
        client.set_terminated(run_id, status)
