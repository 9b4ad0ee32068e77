"""`lmforge reproduce MODEL@ALIAS | MODEL/VERSION`: rebuild a registered version from its lineage.

Reads the version's lineage (data repo and revision, the whole resolved config, code commit),
refuses what cannot be reproduced exactly (missing lineage, a dirty or different code tree, data
that is gone), re-runs the pipeline locally on the recorded data revision through DVC - even
after the working copy has moved on - with registration as a dry run, and compares the new run
with the original: every deterministic metric and the sha256 of every weight tensor.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

from components.ingest.ingest import resolve_rev
from components.shared import artifacts, registry, settings, tracking
from components.shared.errors import UserError
from components.shared.lineage import (
    CONFIG_HASH_TAG,
    DATA_FILES_MD5_TAG,
    DATA_MD5_TAG,
    DATA_REPO_TAG,
    DATA_REV_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    PIPELINE_RUN_NAME_TAG,
    PRESET_TAG,
    TOKENIZER_HASH_TAG,
    WEIGHTS_SHA256_TAG,
)

# Lineage a version must carry to be reproducible.
REQUIRED_TAGS = (DATA_REPO_TAG, DATA_REV_TAG, CONFIG_HASH_TAG, GIT_COMMIT_TAG, WEIGHTS_SHA256_TAG, PRESET_TAG)
# The code whose changes would change the model (data/ and run outputs do not).
CODE_PATHS = ("components", "pipelines", "pyproject.toml", "constraints.txt")
# Metrics that depend on the moment, not the recipe: wall time, speed, the champion of the day.
NOT_COMPARED = re.compile(r"(seconds|_per_s|mfu|tflops)$|champion|gate_passed|register/")
WEIGHTS_ARTIFACT = f"registration/{artifacts.WEIGHTS}"


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """'name@alias' -> (name, alias, None); 'name/3' -> (name, None, '3')."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise UserError(f"model reference {ref!r} is neither MODEL@ALIAS nor MODEL/VERSION: e.g. lmforge-sentiment@champion or lmforge-sentiment/1")


def find_version(ref: str):
    """The MLflow ModelVersion a reference names, or one clear error."""
    mlflow = tracking.connect()
    client = mlflow.MlflowClient()
    name, alias, version = parse_ref(ref)
    with tracking.reported_errors():
        try:
            return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
    raise UserError(f"{ref} not found in the registry at {settings.display_uri(settings.tracking_uri())}: list versions with `lmforge models list`")


def check_reproducible(mv, allow_dirty: bool = False) -> dict:
    """The lineage of `mv` if it can be reproduced exactly here, else one clear error."""
    tags, ref = mv.tags, f"{mv.name}/{mv.version}"
    if not registry.is_complete(tags):
        raise UserError(
            f"{ref} is incomplete (its registration was interrupted), so there is nothing trusted to reproduce: re-run its pipeline run ({tags.get(PIPELINE_RUN_NAME_TAG, '?')}) to complete it"
        )
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing == [DATA_REV_TAG] and tags.get(PIPELINE_RUN_NAME_TAG):
        # Registered by LMForge, from plain paths (ingest.source=path): the files have no revision.
        files = ", ".join(json.loads(tags.get(DATA_FILES_MD5_TAG) or "{}")) or "plain files"
        raise UserError(
            f"{ref} was trained on plain paths (ingest.source=path: {files}), which have no data revision to return to: "
            "track the data with DVC (`lmforge data add`, or `dvc add` and commit) and train again to get a reproducible version"
        )
    if missing:
        raise UserError(f"{ref} lacks lineage ({', '.join(missing)}): it was not registered by LMForge's register stage, so it cannot be reproduced")
    commit = tags[GIT_COMMIT_TAG]
    if tags.get(GIT_DIRTY_TAG) == "true" and not allow_dirty:
        raise UserError(f"{ref} was trained from uncommitted changes on top of {commit[:12]}: an exact rebuild is impossible; pass --allow-dirty to re-run and compare anyway")
    drift = _code_drift(commit)
    if drift and not allow_dirty:
        raise UserError(f"{drift}: check out {commit[:12]} (e.g. `git worktree add ../repro {commit[:12]}`) and reproduce from there, or pass --allow-dirty to compare anyway")
    repo, rev = tags[DATA_REPO_TAG], tags[DATA_REV_TAG]
    if "://" not in repo and not repo.startswith("git@"):
        if not Path(repo).is_dir():
            raise UserError(f"data repository {repo} of {ref} no longer exists here: restore it, or clone it to that path")
        try:
            resolve_rev(repo, rev)  # the same resolution ingest will make
        except UserError:
            raise UserError(f"data revision {rev[:12]} of {ref} is no longer reachable in {repo} (history rewritten or not fetched): `git fetch` it, or restore the commit") from None
    return {"data_repo": repo, "data_rev": rev, "commit": commit, "drift": drift}


def _code_drift(commit: str) -> str:
    """'' when the code here (committed or not) is exactly `commit`'s, else what differs."""
    code = settings.code_dir()
    out = subprocess.run(["git", "-C", str(code), "diff", "--stat", commit, "--", *CODE_PATHS], capture_output=True, text=True)
    if out.returncode != 0:
        return f"the code here ({code}) does not contain commit {commit[:12]}"
    changed = [line.split("|")[0].strip() for line in out.stdout.splitlines() if "|" in line]
    return f"the code here differs from {commit[:12]} in {len(changed)} file(s) ({', '.join(changed[:4])})" if changed else ""


def original_config(mv):
    """The whole resolved preset the version was trained with, checked against its recorded hash."""
    import yaml

    from pipelines.config import PipelineConfig

    client = tracking.connect().MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(mv.run_id, "config.yaml", tmp)
        except Exception:
            raise UserError(f"{mv.name}/{mv.version}: its run {mv.run_id} has no config.yaml, so the recipe is unknown and cannot be reproduced") from None
        resolved = yaml.safe_load(Path(path).read_text())
    config = PipelineConfig.model_validate(resolved)
    if config.hash() != mv.tags[CONFIG_HASH_TAG]:
        raise UserError(f"{mv.name}/{mv.version}: config.yaml on its run does not match the recorded config hash: the lineage is inconsistent")
    dry = {**resolved, "register": {**resolved["register"], "dry_run": True}}  # rebuild, never register again
    return PipelineConfig.model_validate(dry)


def reproduce(ref: str, allow_dirty: bool = False, verbose: bool = False) -> dict:
    """Re-run the version's recipe on its data revision and compare. Returns the comparison."""
    from pipelines.local import run_local
    from pipelines.run_names import new_run_name

    mv = find_version(ref)
    lineage = check_reproducible(mv, allow_dirty)
    config = original_config(mv)
    run_name = new_run_name(f"reproduce-{mv.name}-v{mv.version}")
    print(f"reproducing {mv.name}/{mv.version} from data revision {lineage['data_rev'][:12]} of {settings.display_uri(lineage['data_repo'])}", flush=True)
    result = run_local(config, mv.tags[PRESET_TAG], data_rev=lineage["data_rev"], data_repo=lineage["data_repo"], run_name=run_name, verbose=verbose)
    return {"ref": f"{mv.name}/{mv.version}", "run_name": run_name, **lineage, **compare_runs(mv.run_id, result["run_id"])}


def compare_runs(original: str, rebuilt: str) -> dict:
    """Deterministic metrics and per-tensor weight hashes of two pipeline runs."""
    client = tracking.connect().MlflowClient()
    old, new = client.get_run(original).data, client.get_run(rebuilt).data
    keys = sorted(k for k in old.metrics if not NOT_COMPARED.search(k))
    metrics = [(k, old.metrics[k], new.metrics.get(k)) for k in keys]
    w_old, w_new = _weights(client, original), _weights(client, rebuilt)
    differing = sorted(k for k in w_old.keys() | w_new.keys() if w_old.get(k) != w_new.get(k))
    checks = {t: (old.tags.get(t), new.tags.get(t)) for t in (DATA_MD5_TAG, TOKENIZER_HASH_TAG, CONFIG_HASH_TAG)}
    match = not differing and all(a == b for _, a, b in metrics) and all(a == b for a, b in checks.values())
    return {"match": match, "metrics": metrics, "tensors": len(w_old), "differing_tensors": differing, "checks": checks}


def _weights(client, run_id: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return artifacts.read_json(client.download_artifacts(run_id, WEIGHTS_ARTIFACT, tmp))
        except Exception:
            raise UserError(f"run {run_id} has no {WEIGHTS_ARTIFACT}: its weights cannot be compared") from None


def render(report: dict) -> str:
    """What the command prints: the verdict first, then every compared value."""
    lines = [""]
    if report["match"]:
        lines.append(f"{report['ref']} reproduced exactly: {len(report['metrics'])} metrics equal, all {report['tensors']} weight tensors bit-identical")
    else:
        lines.append(f"{report['ref']} NOT reproduced exactly:")
        if report["differing_tensors"]:
            names = ", ".join(report["differing_tensors"][:5]) + (" ..." if len(report["differing_tensors"]) > 5 else "")
            lines.append(f"  weights differ in {len(report['differing_tensors'])} of {report['tensors']} tensors: {names}")
        lines += [f"  {t} differs: {a} vs {b}" for t, (a, b) in report["checks"].items() if a != b]
    if report.get("drift"):
        lines.append(f"  note: {report['drift']}")
    lines += ["", f"{'metric':<36}{'original':>14}{'rebuilt':>14}"]
    for key, a, b in report["metrics"]:
        mark = "" if a == b else "   <- differs"
        lines.append(f"  {key:<34}{a:>14.6g}{(b if b is not None else float('nan')):>14.6g}{mark}")
    lines.append(f"\nrebuild run: {report['run_name']}")
    return "\n".join(lines)
