"""Audited alias moves in the MLflow model registry: the one way LMForge moves an alias.

Every move (`promote`, `rollback`, and the register stage's `challenger`/`champion`) goes through
`move_alias`, which appends a record {seq, model, alias, action, from_version, to_version, actor,
time, reason, gate, forced} to the model's history. A record is one MLflow run in the experiment
`lmforge-registry-audit`, the record its *params* (MLflow refuses to change a logged param, and
LMForge offers no edit or delete), with tags only for finding it (model, alias).

Order of a move, chosen so that no path leaves an alias move without a record:
  1. write the record as a *pending* run (status RUNNING) - if this fails, nothing has moved;
  2. set the alias - if this fails, the record is marked FAILED (hidden from the history);
  3. confirm the record (status FINISHED) - if this fails, the alias is put back and the record
     marked FAILED.
Only when the tracking server dies between 2 and 3 (and so cannot be cleaned up either) can a
record stay pending: the history shows it as "unconfirmed" - a move that may have happened is on
record, never a move that happened off record.

Gate result of a version: its model-version tag `lmforge.gate` ("passed" / "failed"; missing =
"none"), with an optional one-line `lmforge.gate_summary`, both written by the register stage.
"""

from __future__ import annotations

import contextlib
import io
import re
from datetime import datetime, timezone

from components.shared import settings, tracking
from components.shared.errors import UserError

AUDIT_EXPERIMENT = "lmforge-registry-audit"
CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_TAG = "lmforge.gate"
GATE_SUMMARY_TAG = "lmforge.gate_summary"
GATES = ("passed", "failed", "none")
# A version's registration state (components/register): "incomplete" from its creation until its
# card, alias and record are in place, then "complete"; versions from before the tag have none
# and count as complete. Every command here ignores or refuses an incomplete version.
STATE_TAG, INCOMPLETE, COMPLETE = "lmforge.state", "incomplete", "complete"
METRIC_TAGS = ("accuracy", "macro_f1", "baseline_majority_accuracy", "baseline_tfidf_accuracy", "perplexity")  # metric.<key> on versions
MODEL_TAG, ALIAS_TAG = "lmforge.audit.model", "lmforge.audit.alias"
RECORD_KEYS = ("seq", "model", "alias", "action", "from_version", "to_version", "actor", "time", "reason", "gate", "forced")
MAX_REASON = 1000  # characters; well under MLflow's param value limit
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")  # as RegisterConfig.model_name; safe in filter strings
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


# --- moving an alias ----------------------------------------------------------------------------


def move_alias(model_name: str, alias: str, version, *, reason: str, gate: str, forced: bool = False, actor: str | None = None, action: str = "move") -> dict:
    """Point `model_name@alias` at `version` and append the move to the history (order above).

    Returns the record plus `moved` (False, and nothing recorded, when the alias already points
    there: registering or promoting twice is not a second move). `action` names the command
    (promote, rollback, register, ...); rollbacks are replayed differently, see `rollback`.
    """
    _check_name(model_name)
    _check_alias(alias)
    version = _check_version(version)
    if gate not in GATES:
        raise UserError(f"gate result {gate!r} is not one of {', '.join(GATES)}")
    reason = _check_reason(reason)
    with tracking.reported_errors():
        client = _client()
        _model_version(client, model_name, version)
        current = alias_holders(model_name, client).get(alias)
        record = {"model": model_name, "alias": alias, "action": action, "from_version": current, "to_version": version, "actor": actor or settings.actor(),
                  "time": _now(), "reason": reason, "gate": gate, "forced": bool(forced)}  # fmt: skip
        if current == version:
            return {**record, "seq": None, "moved": False}
        exp_id = _audit_experiment(client)
        record["seq"] = 1 + max((r["seq"] for r in _records(client, exp_id, model_name, states=None)), default=0)
        run_id = _write_pending(client, exp_id, record)
        try:
            client.set_registered_model_alias(model_name, alias, version)
        except Exception:
            _quietly(_end_record, client, run_id, "FAILED")
            raise
        try:
            _end_record(client, run_id, "FINISHED")
        except Exception:
            _quietly(_restore_alias, client, model_name, alias, current)
            _quietly(_end_record, client, run_id, "FAILED")
            raise
    return {**record, "moved": True}


def promote(model_name: str, version, *, force: bool = False, reason: str | None = None, actor: str | None = None, action: str = "promote") -> dict:
    """Move `champion` to `version` if its gate passed; `force` overrides and needs a reason.
    (The register stage's automatic promotion calls this with action="auto-promote".)"""
    _check_name(model_name)
    version = _check_version(version)
    if force and not (reason or "").strip():
        raise UserError('--force needs --reason "why": a forced promotion is recorded in the model\'s history with its reason')
    with tracking.reported_errors():
        tags = _complete_version(_client(), model_name, version).tags
    gate, summary = gate_of(tags), tags.get(GATE_SUMMARY_TAG, "").strip()
    if gate != "passed" and not force:
        why = f"its gate {gate}" if gate != "none" else "it has no gate result (tag lmforge.gate)"
        detail = f" ({summary})" if summary else ""
        raise UserError(f'{model_name} version {version} cannot become @{CHAMPION}: {why}{detail}: promote a version whose gate passed, or override with --force --reason "why"')
    return move_alias(model_name, CHAMPION, version, reason=reason or f"gate passed{': ' + summary if summary else ''}", gate=gate, forced=force, actor=actor, action=action)


def rollback(model_name: str, alias: str = CHAMPION, *, reason: str | None = None, actor: str | None = None) -> dict:
    """Return `alias` to the holder it had before its current one, per the history.

    The history is replayed as an undo stack: a move pushes its target, a rollback pops. So a
    rollback goes to the holder before the current one in the chain of non-rolled-back moves,
    and rolling back twice walks two steps back (v1 -> v2 -> v3, rollback: v2, rollback: v1;
    then a third rollback has no previous holder). A move made outside LMForge (the alias
    points elsewhere than the history says) is refused: promote explicitly instead.
    """
    _check_name(model_name)
    _check_alias(alias)
    stack = holder_chain(model_name, alias)
    current = alias_holders(model_name).get(alias)
    hint = f"see lmforge models history {model_name}"
    if current is None:
        raise UserError(f"{model_name} has no @{alias} to roll back: {hint}")
    if stack and stack[-1] != current:
        raise UserError(f"{model_name}@{alias} points at version {current} but its recorded history ends at version {stack[-1]} (moved outside LMForge, or an unconfirmed move): {hint}, then promote the version you want")
    if len(stack) < 2:
        raise UserError(f"{model_name}@{alias} (version {current}) has no previous holder to roll back to: {hint}")
    target = stack[-2]
    with tracking.reported_errors():
        gate = gate_of(_complete_version(_client(), model_name, target).tags)
    return move_alias(model_name, alias, target, reason=reason or f"rollback from version {current}", gate=gate, actor=actor, action="rollback")


def holder_chain(model_name: str, alias: str) -> list[str]:
    """The undo stack of `alias` holders after replaying its confirmed history (see `rollback`)."""
    stack: list[str] = []
    for r in history(model_name, require_model=False):
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


# --- reading ------------------------------------------------------------------------------------


def history(model_name: str, *, require_model: bool = True) -> list[dict]:
    """Every recorded move of the model's aliases, oldest first; `state` is "done" or
    "unconfirmed" (a pending record whose outcome is unknown, see the module docstring)."""
    _check_name(model_name)
    with tracking.reported_errors():
        client = _client()
        exp = client.get_experiment_by_name(AUDIT_EXPERIMENT)
        records = _records(client, exp.experiment_id, model_name, states=("FINISHED", "RUNNING")) if exp else []
        if not records and require_model:
            _registered_model(client, model_name)  # an unknown model is an error, a known one may have no moves yet
    return records


def alias_holders(model_name: str, client=None) -> dict[str, str]:
    """{alias: version} of a registered model (MLflow returns versions as int or str: str here)."""
    with tracking.reported_errors():
        model = _registered_model(client or _client(), model_name)
    return {str(a): str(v) for a, v in (model.aliases or {}).items()}


def champion(model_name: str) -> str | None:
    """The version that holds @champion, or None."""
    return alias_holders(model_name).get(CHAMPION)


def is_complete(tags: dict) -> bool:
    """False for a version whose registration never finished (see STATE_TAG)."""
    return (tags or {}).get(STATE_TAG, COMPLETE) != INCOMPLETE


def gate_of(tags: dict) -> str:
    """A version's gate result from its tags: passed, failed, or none (missing or unknown)."""
    value = (tags or {}).get(GATE_TAG, "none").strip().lower()
    return value if value in GATES else "none"


def list_versions(model_name: str | None = None) -> list[dict]:
    """One row per version (of one model, or of every registered model): aliases, creation time,
    gate, key metrics, short data revision and pipeline run name."""
    if model_name is not None:
        _check_name(model_name)
    with tracking.reported_errors():
        client = _client()
        names = [model_name] if model_name else sorted(m.name for m in _paged(client.search_registered_models))
        rows = []
        for name in names:
            holders: dict[str, list[str]] = {}
            for alias, version in alias_holders(name, client).items():
                holders.setdefault(version, []).append(alias)
            for mv in _paged(client.search_model_versions, f"name = '{name}'"):
                tags = mv.tags or {}
                if not is_complete(tags):
                    continue  # a registration cut short: not a version anyone should use
                rows.append({
                    "model": name, "version": str(mv.version), "aliases": sorted(holders.get(str(mv.version), [])),
                    "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    "gate": gate_of(tags), **{k: _float(tags.get(f"metric.{k}")) for k in METRIC_TAGS},
                    "data_rev": tags.get("lmforge.data_rev", "")[:8], "run_name": tags.get("lmforge.pipeline_run_name", ""),
                })  # fmt: skip
    return sorted(rows, key=lambda r: (r["model"], int(r["version"])))


# --- internals ----------------------------------------------------------------------------------


def _client():
    return tracking.connect().MlflowClient()


def _registered_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"registered model {name!r} not found at {settings.display_uri(settings.tracking_uri())}: list the models with lmforge models list") from None
        raise


def _model_version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    _registered_model(client, name)
    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"{name} has no version {version}: list its versions with lmforge models list {name}") from None
        raise


def _complete_version(client, name: str, version: str):
    """The model version, refused when its registration never finished."""
    mv = _model_version(client, name, version)
    if not is_complete(mv.tags):
        run = (mv.tags or {}).get("lmforge.pipeline_run_name", "")
        again = f"lmforge run --run-name {run} with the same config" if run else "its pipeline run again"
        raise UserError(f"{name} version {version} is incomplete (its registration was interrupted): run {again} to complete it, or use another version")
    return mv


def _audit_experiment(client) -> str:
    exp = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    if exp is None:
        from mlflow.exceptions import MlflowException

        try:
            return client.create_experiment(AUDIT_EXPERIMENT, artifact_location=settings.artifact_location(), tags={"lmforge.purpose": "append-only history of alias moves"})
        except MlflowException:  # created by a concurrent move
            exp = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    if exp.lifecycle_stage != "active":
        raise UserError(f"the MLflow experiment {AUDIT_EXPERIMENT!r} (the alias history) is deleted: restore it with mlflow experiments restore --experiment-id {exp.experiment_id}")
    return exp.experiment_id


def _write_pending(client, exp_id: str, record: dict) -> str:
    """Create the record's run (RUNNING) with every param in one batch."""
    from mlflow.entities import Param

    frm = record["from_version"] or "none"
    run = client.create_run(exp_id, run_name=f"{record['model']}@{record['alias']} {frm}->{record['to_version']}",
                            tags={MODEL_TAG: record["model"], ALIAS_TAG: record["alias"], "lmforge.audit.action": record["action"]})  # fmt: skip
    params = [Param(k, "none" if record[k] is None else str(record[k])) for k in RECORD_KEYS]
    try:
        client.log_batch(run.info.run_id, params=params)
    except Exception:
        _quietly(_end_record, client, run.info.run_id, "FAILED")
        raise
    return run.info.run_id


def _end_record(client, run_id: str, status: str) -> None:
    """FINISHED confirms a record, FAILED hides it. Against a server MLflow prints links to the
    run on stdout here; the audit run is bookkeeping, and the commands print the move instead."""
    with contextlib.redirect_stdout(io.StringIO()):
        client.set_terminated(run_id, status)


def _records(client, exp_id: str, model_name: str, states: tuple[str, ...] | None) -> list[dict]:
    """The model's records in run states `states` (None: all), ordered by seq then time."""
    out = []
    for run in _paged(client.search_runs, [exp_id], f"tags.`{MODEL_TAG}` = '{model_name}'"):
        p = run.data.params
        if "seq" not in p or (states is not None and run.info.status not in states):
            continue  # a run whose params never landed is no record
        out.append({
            "seq": int(p["seq"]), "model": p["model"], "alias": p["alias"], "action": p.get("action", "move"),
            "from_version": None if p["from_version"] == "none" else p["from_version"], "to_version": p["to_version"],
            "actor": p["actor"], "time": p["time"], "reason": p["reason"], "gate": p["gate"], "forced": p["forced"] == "True",
            "state": "done" if run.info.status == "FINISHED" else "unconfirmed" if run.info.status == "RUNNING" else "failed",
        })  # fmt: skip
    return sorted(out, key=lambda r: (r["seq"], r["time"]))


def _restore_alias(client, model_name: str, alias: str, version: str | None) -> None:
    if version is None:
        client.delete_registered_model_alias(model_name, alias)
    else:
        client.set_registered_model_alias(model_name, alias, version)


def _paged(search, *args):
    """Every result of an MLflow search call, page by page."""
    token = None
    while True:
        page = search(*args, page_token=token) if token else search(*args)
        yield from page
        token = page.token
        if not token:
            return


def _quietly(fn, *args) -> None:
    """Best-effort clean-up after a failure: the original error is the one to report."""
    with contextlib.suppress(Exception):
        fn(*args)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise UserError(f"{name!r} is not a registered model name (letters, digits, '.', '_' and '-'): list the models with lmforge models list")


def _check_alias(alias: str) -> None:
    if not _ALIAS.match(alias or ""):
        raise UserError(f"{alias!r} is not an alias name (letters, digits, '_' and '-'), e.g. champion")


def _check_version(version) -> str:
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{version!r} is not a model version number (1, 2, ...): list the versions with lmforge models list")
    return str(int(text))


def _check_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())  # one line in the history table
    if len(text) > MAX_REASON:
        raise UserError(f"the reason is {len(text)} characters long: keep it under {MAX_REASON}")
    return text
