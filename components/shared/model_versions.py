"""Reading the MLflow model registry: versions, their aliases, gate and registration state, and the
alias history (audit_ledger.py), plus the checks and look-ups every registry command shares.

Gate result of a version: its model-version tag `lmforge.gate` ("passed" / "failed"; missing =
"none"), with an optional one-line `lmforge.gate_summary`, both written by the register stage.
Moving an alias is registry.py's; everything here only reads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from components.shared import audit_ledger, settings, tracking
from components.shared.errors import UserError
from components.shared.lineage import DATA_REV_TAG, GATE_TAG, PIPELINE_RUN_NAME_TAG

CHAMPION = "champion"
GATES = ("passed", "failed", "none")
# A version's registration state (components/register): "incomplete" from its creation until its
# card, alias and record are in place, then "complete"; versions from before the tag have none
# and count as complete. Every command here ignores or refuses an incomplete version.
STATE_TAG, INCOMPLETE, COMPLETE = "lmforge.state", "incomplete", "complete"
METRIC_TAGS = ("accuracy", "macro_f1", "baseline_majority_accuracy", "baseline_tfidf_accuracy", "perplexity", "pearson", "rmse")  # metric.<key> on versions (a task's own)
MAX_REASON = 1000  # characters; the whole record stays well under MLflow's 6000-character param value
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")  # as RegisterConfig.model_name; safe in filter strings
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def history(model_name: str, *, require_model: bool = True) -> list[dict]:
    """Every recorded move of the model's aliases, oldest first; `state` is "done", "failed"
    (attempted, alias not moved) or "unconfirmed" (in flight, or its writer died; see above)."""
    return audit(model_name, require_model=require_model)[0]


def audit(model_name: str, *, require_model: bool = True) -> tuple[list[dict], list[str]]:
    """(records, problems): the history and every integrity problem found reading it (a deleted
    or failed-marked ledger run, a gap, a broken hash chain, an alias the history does not explain)."""
    check_name(model_name)
    with tracking.reported_errors():
        client = mlflow_client()
        ledger = audit_ledger.read(client, model_name)
        holders = {} if not ledger.records and not require_model else alias_holders(model_name, client)
    records = [{**public_record(r), "state": "unconfirmed" if r["state"] == "pending" else r["state"]} for r in ledger.records]
    problems = list(ledger.problems)
    for alias, version in sorted(holders.items()):
        moves_of = [r for r in records if r["alias"] == alias and r["state"] != "failed"]
        if moves_of and moves_of[-1]["state"] == "unconfirmed" and version in (moves_of[-1]["to_version"], moves_of[-1]["from_version"]):
            continue  # in flight, or its writer died: the next move settles it
        last = next((r for r in reversed(moves_of) if r["state"] == "done"), None)
        if last is None:
            problems.append(f"@{alias} points at version {version} but the history records no move of it (set outside LMForge, or the history was replaced)")
        elif last["to_version"] != version:
            problems.append(f"@{alias} points at version {version} but the history's last move of it is to version {last['to_version']} (moved outside LMForge)")
    return records, problems


def alias_holders(model_name: str, client=None) -> dict[str, str]:
    """{alias: version} of a registered model (MLflow returns versions as int or str: str here)."""
    with tracking.reported_errors():
        model = registered_model(client or mlflow_client(), model_name)
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
        check_name(model_name)
    with tracking.reported_errors():
        client = mlflow_client()
        names = [model_name] if model_name else sorted(m.name for m in paged(client.search_registered_models))
        rows = []
        for name in names:
            holders: dict[str, list[str]] = {}
            for alias, version in alias_holders(name, client).items():
                holders.setdefault(version, []).append(alias)
            for mv in paged(client.search_model_versions, f"name = '{name}'"):
                tags = mv.tags or {}
                if not is_complete(tags):
                    continue  # a registration cut short: not a version anyone should use
                rows.append({
                    "model": name, "version": str(mv.version), "aliases": sorted(holders.get(str(mv.version), [])),
                    "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
                    "gate": gate_of(tags), **{k: _float(tags.get(f"metric.{k}")) for k in METRIC_TAGS},
                    "data_rev": tags.get(DATA_REV_TAG, "")[:8], "run_name": tags.get(PIPELINE_RUN_NAME_TAG, ""),
                })  # fmt: skip
    return sorted(rows, key=lambda r: (r["model"], int(r["version"])))


# --- look-ups and checks the registry commands share ------------------------------------------


def mlflow_client():
    return tracking.connect().MlflowClient()


def registered_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"registered model {name!r} not found at {settings.display_uri(settings.tracking_uri())}: list the models with lmforge models list") from None
        raise


def model_version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    registered_model(client, name)
    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"{name} has no version {version}: list its versions with lmforge models list {name}") from None
        raise


def complete_version(client, name: str, version: str):
    """The model version, refused when its registration never finished."""
    mv = model_version(client, name, version)
    if not is_complete(mv.tags):
        run = (mv.tags or {}).get(PIPELINE_RUN_NAME_TAG, "")
        again = f"lmforge run --run-name {run} with the same config" if run else "its pipeline run again"
        raise UserError(f"{name} version {version} is incomplete (its registration was interrupted): run {again} to complete it, or use another version")
    return mv


def paged(search, *args):
    """Every result of an MLflow search call, page by page."""
    token = None
    while True:
        page = search(*args, page_token=token) if token else search(*args)
        yield from page
        token = page.token
        if not token:
            return


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise UserError(f"{name!r} is not a registered model name (letters, digits, '.', '_' and '-'): list the models with lmforge models list")


def check_alias(alias: str) -> None:
    if not _ALIAS.match(alias or ""):
        raise UserError(f"{alias!r} is not an alias name (letters, digits, '_' and '-'), e.g. champion")


def check_version(version) -> str:
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{version!r} is not a model version number (1, 2, ...): list the versions with lmforge models list")
    return str(int(text))


def check_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())  # one line in the history table
    if len(text) > MAX_REASON:
        raise UserError(f"the reason is {len(text)} characters long: keep it under {MAX_REASON}")
    return text


def public_record(record: dict) -> dict:
    """A history record as commands show it: without its chain fields (prev, claim, hash)."""
    return {k: v for k, v in record.items() if k not in ("prev", "claim", "hash")}
