"""Audited alias moves in the MLflow model registry: the one way LMForge moves an alias.

Every move (`promote`, `rollback`, and the register stage's `challenger`/`champion`) goes through
`move_alias`, which appends a record {seq, model, alias, action, from_version, to_version, actor,
time, reason, gate, forced} to the model's history, an append-only ledger (audit_ledger.py).

Moves on one model are serialised by a compare-and-set on the record's sequence number, held in
the tracking store itself, so it orders moves from any process on any machine (a file lock would
order one machine's only):
  1. read the ledger; if its last record is *pending* (a move in flight), wait for it;
  2. claim number last+1 by writing the record there; if another move claimed it first, go to 1;
  3. set the alias - if this fails, the record's outcome is "failed" (nothing moved);
  4. write the outcome "done" - if this fails, the alias is put back and the outcome is "failed".
A pending record blocks the next move for at most LEASE_S: a writer that died between 2 and 4
(the tracking server went away) leaves it pending, and the next move settles it from the alias
itself (the alias points at its target: "done"; else "failed"). So the history is a strict
sequence 1, 2, 3, ..., and the alias always equals the last "done" record's target.

Reading (versions, aliases, gates, the history) lives in model_versions.py; its public names are
re-exported here, so `registry` stays the one module commands and stages import.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from datetime import UTC, datetime

from components.shared import audit_ledger, settings, tracking
from components.shared.errors import UserError
from components.shared.lineage import GATE_SUMMARY_TAG, GATE_TAG
from components.shared.model_versions import (
    CHAMPION,
    COMPLETE,
    GATES,
    INCOMPLETE,
    METRIC_TAGS,
    STATE_TAG,
    alias_holders,
    audit,
    champion,
    check_alias,
    check_name,
    check_reason,
    check_version,
    complete_version,
    gate_of,
    history,
    is_complete,
    list_versions,
    mlflow_client,
    model_version,
    public_record,
    registered_model,
)

__all__ = [
    "AUDIT_EXPERIMENT", "CHAMPION", "COMPLETE", "GATES", "INCOMPLETE", "METRIC_TAGS", "STATE_TAG",
    "alias_holders", "audit", "champion", "gate_of", "history", "holder_chain", "holder_chain_of", "is_complete",
    "list_versions", "move_alias", "promote", "rollback",
]  # fmt: skip

AUDIT_EXPERIMENT = audit_ledger.AUDIT_EXPERIMENT  # where the history lives
LEASE_S = 120.0  # a move takes well under a second; a record pending longer is from a writer that died
WAIT_S = 300.0  # how long a move waits behind others before it gives up with one line


# --- moving an alias ----------------------------------------------------------------------------


def move_alias(model_name: str, alias: str, version, *, reason: str, gate: str, forced: bool = False, actor: str | None = None, action: str = "move") -> dict:
    """Point `model_name@alias` at `version` and append the move to the history (order above).

    Returns the record plus `moved` (False, and nothing recorded, when the alias already points
    there: registering or promoting twice is not a second move). `action` names the command
    (promote, rollback, register, ...); rollbacks are replayed differently, see `rollback`.
    """
    check_name(model_name)
    check_alias(alias)
    version = check_version(version)
    if gate not in GATES:
        raise UserError(f"gate result {gate!r} is not one of {', '.join(GATES)}")
    reason = check_reason(reason)

    def plan(records: list[dict], current: str | None, client) -> tuple[str, str, str]:
        model_version(client, model_name, version)  # an unknown version is refused before anything is written
        return version, gate, reason

    return _move(model_name, alias, plan, forced=forced, actor=actor, action=action)


def promote(model_name: str, version, *, force: bool = False, reason: str | None = None, actor: str | None = None, action: str = "promote") -> dict:
    """Move `champion` to `version` if its gate passed; `force` overrides and needs a reason.
    (The register stage's automatic promotion calls this with action="auto-promote".)"""
    check_name(model_name)
    version = check_version(version)
    if force and not (reason or "").strip():
        raise UserError('--force needs --reason "why": a forced promotion is recorded in the model\'s history with its reason')
    with tracking.reported_errors():
        tags = complete_version(mlflow_client(), model_name, version).tags
    gate, summary = gate_of(tags), tags.get(GATE_SUMMARY_TAG, "").strip()
    if gate != "passed" and not force:
        why = f"its gate {gate}" if gate != "none" else f"it has no gate result (tag {GATE_TAG})"
        detail = f" ({summary})" if summary else ""
        raise UserError(f'{model_name} version {version} cannot become @{CHAMPION}: {why}{detail}: promote a version whose gate passed, or override with --force --reason "why"')
    return move_alias(model_name, CHAMPION, version, reason=reason or f"gate passed{': ' + summary if summary else ''}", gate=gate, forced=force, actor=actor, action=action)


def rollback(model_name: str, alias: str = CHAMPION, *, reason: str | None = None, actor: str | None = None) -> dict:
    """Return `alias` to the holder it had before its current one, per the history.

    The history is replayed as an undo stack: a move pushes its target, a rollback pops. So a
    rollback goes to the holder before the current one in the chain of non-rolled-back moves,
    and rolling back twice walks two steps back (v1 -> v2 -> v3, rollback: v2, rollback: v1;
    then a third rollback has no previous holder). A move made outside LMForge (the alias
    points elsewhere than the history says) is refused: promote explicitly instead. The target
    is chosen from the same reading of the history that the move then extends, so concurrent
    rollbacks and promotions each step from the state the one before them left.
    """
    check_name(model_name)
    check_alias(alias)
    hint = f"see lmforge models history {model_name}"

    def plan(records: list[dict], current: str | None, client) -> tuple[str, str, str]:
        stack = holder_chain_of(records, alias)
        if current is None:
            raise UserError(f"{model_name} has no @{alias} to roll back: {hint}")
        if stack and stack[-1] != current:
            raise UserError(
                f"{model_name}@{alias} points at version {current} but its recorded history ends at version {stack[-1]} (moved outside LMForge, or an unconfirmed move): {hint}, then promote the version you want"
            )
        if len(stack) < 2:
            raise UserError(f"{model_name}@{alias} (version {current}) has no previous holder to roll back to: {hint}")
        target = stack[-2]
        return target, gate_of(complete_version(client, model_name, target).tags), check_reason(reason) or f"rollback from version {current}"

    return _move(model_name, alias, plan, forced=False, actor=actor, action="rollback")


def holder_chain(model_name: str, alias: str) -> list[str]:
    """The undo stack of `alias` holders after replaying its confirmed history (see `rollback`)."""
    return holder_chain_of(history(model_name, require_model=False), alias)


def holder_chain_of(records: list[dict], alias: str) -> list[str]:
    stack: list[str] = []
    for r in records:
        if r["alias"] != alias or r["state"] != "done":
            continue
        if r["action"] == "rollback":
            if stack and stack[-1] == r["from_version"]:
                stack.pop()
            if not stack or stack[-1] != r["to_version"]:
                stack.append(r["to_version"])
            continue
        if r["from_version"] is not None and (not stack or stack[-1] != r["from_version"]):
            stack.append(r["from_version"])  # a holder set before LMForge recorded, or off record
        stack.append(r["to_version"])
    return stack


def _move(model_name: str, alias: str, plan, *, forced: bool, actor: str | None, action: str) -> dict:
    """Steps 1-4 of the module docstring. `plan(records, current_holder, client)` returns
    (version, gate, reason) from one reading of the history, or raises UserError."""
    with tracking.reported_errors():
        client = mlflow_client()
        registered_model(client, model_name)
        audit_ledger.ledger_run_id(client, model_name, create=True)
        deadline, pause = time.monotonic() + WAIT_S, 0.05
        while True:
            ledger = audit_ledger.read(client, model_name)
            if not ledger.writable:
                raise UserError(f"{model_name}: {ledger.problems[-1]}; no alias was moved")
            head = ledger.head
            if head is not None and head["state"] == "pending":
                if _age_s(head) > LEASE_S:
                    _settle_abandoned(client, ledger, head)
                    continue
                if time.monotonic() > deadline:
                    raise UserError(
                        f"{model_name}: record #{head['seq']} ({head['action']} by {head['actor']} at {head['time']}) is still in flight after {WAIT_S:.0f} s: retry later; see lmforge models history {model_name}"
                    )
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 1.5, 1.0)
                continue
            current = alias_holders(model_name, client).get(alias)
            version, gate, reason = plan(ledger.records, current, client)
            record = {"seq": (head["seq"] if head else 0) + 1, "prev": head["hash"] if head else "", "claim": uuid.uuid4().hex,
                      "model": model_name, "alias": alias, "action": action, "from_version": current, "to_version": version,
                      "actor": actor or settings.actor(), "time": _now(), "reason": reason, "gate": gate, "forced": bool(forced)}  # fmt: skip
            if current == version:
                return {**public_record(record), "seq": None, "moved": False}
            if audit_ledger.claim(client, ledger.run_id, record):
                break
            time.sleep(pause * random.uniform(0, 1))  # another move took this number: read again
        _apply(client, ledger.run_id, record)
    return {**public_record(record), "moved": True}


def _apply(client, run_id: str, record: dict) -> None:
    """Steps 3 and 4 for a claimed record."""
    model_name, alias, seq = record["model"], record["alias"], record["seq"]
    try:
        client.set_registered_model_alias(model_name, alias, record["to_version"])
    except Exception:
        _quietly(audit_ledger.settle, client, run_id, seq, "failed")
        raise
    try:
        outcome = audit_ledger.settle(client, run_id, seq, "done")
    except Exception:
        _quietly(_restore_alias, client, model_name, alias, record["from_version"])
        _quietly(audit_ledger.settle, client, run_id, seq, "failed")
        raise
    if outcome != "done":  # this move outlived its lease and a later one settled it as failed
        raise UserError(f"{model_name}@{alias}: move #{seq} took over {LEASE_S:.0f} s and was recorded as failed by another move: check lmforge models list {model_name} and promote again")


def _settle_abandoned(client, ledger, head: dict) -> None:
    """A pending record past its lease: its writer died. The alias says whether it moved."""
    holder = alias_holders(head["model"], client).get(head["alias"])
    audit_ledger.settle(client, ledger.run_id, head["seq"], "done" if holder == head["to_version"] else "failed")


def _age_s(record: dict) -> float:
    try:
        then = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return LEASE_S + 1  # an unreadable time cannot hold the history forever
    return (datetime.now(UTC) - then).total_seconds()


def _restore_alias(client, model_name: str, alias: str, version: str | None) -> None:
    if version is None:
        client.delete_registered_model_alias(model_name, alias)
    else:
        client.set_registered_model_alias(model_name, alias, version)


def _quietly(fn, *args) -> None:
    """Best-effort clean-up after a failure: the original error is the one to report."""
    with contextlib.suppress(Exception):
        fn(*args)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
