"""register: log the fine-tuned model (the task's: a classifier, a regressor) to MLflow, create a
model version with its lineage, alias it.

The version is created with all its lineage tags and `lmforge.state=incomplete` in one call;
its card, its alias and that move's record follow, and only then is it marked complete. Every
LMForge command ignores an incomplete version (components.shared.registry.is_complete), so a
tracking server that dies at any point in between leaves nothing half trusted, and the failure
path does not call the dead server again. Where the server still answers, a failed registration
deletes its version. A pipeline run registers at most one version: running the stage again (the
same --run-name) finds it by the run's name and completes it. Automatic promotion comes after:
a failure there leaves a complete @challenger that `lmforge promote` can move on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from pathlib import Path

from pydantic import Field, model_validator

from components import tasks
from components.register.model_card import model_card
from components.shared import artifacts, inputs, registry, settings, tracking
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.lineage import (
    CONFIG_ARTIFACT_TAG,
    CONFIG_HASH_TAG,
    DATA_FILES_MD5_TAG,
    DATA_MD5_TAG,
    DATA_REPO_TAG,
    DATA_REV_TAG,
    GATE_SUMMARY_TAG,
    GATE_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    KFP_RUN_ID_TAG,
    PACKAGES_TAG,
    PIPELINE_RUN_NAME_TAG,
    PRESET_TAG,
    SEEDS_TAG,
    TOKENIZER_HASH_TAG,
    VALIDATION_SUITES_TAG,
    VALIDATION_TAG,
    WEIGHTS_SHA256_TAG,
    image_tag,
)
from components.shared.training import require_dir

# What the logged model needs at serving time, pinned to what trained it (read at run time).
SERVING_PACKAGES = ("torch", "transformers", "tokenizers", "numpy")


class RegisterConfig(StageConfig):
    task: tasks.TaskName = Field(tasks.DEFAULT, description="the downstream task: filled from finetune.task (name it there, once)")
    model_name: str = Field(
        "lmforge-sentiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$", description="registered model name in MLflow; default: the task's (lmforge-sentiment, lmforge-sentiment-intensity)"
    )
    alias: str = Field("challenger", pattern=r"^[A-Za-z0-9_-]{1,255}$", description="alias set on every new version (letters, digits, _ and -)")
    auto_promote: bool = Field(False, description="when the gate passed, move @champion to the new version too (else `lmforge promote` does)")
    dry_run: bool = Field(False, description="record lineage and weight hashes on the run but create no version and move no alias (lmforge reproduce)")

    @model_validator(mode="before")
    @classmethod
    def _task_model_name(cls, data):
        """Each task registers under a name of its own unless the preset names one."""
        if isinstance(data, dict) and "model_name" not in data and data.get("task", tasks.DEFAULT) in tasks.NAMES:
            data = {**data, "model_name": tasks.get(data.get("task", tasks.DEFAULT)).MODEL_NAME}
        return data


def register(
    classifier_dir: Path,
    eval_dir: Path,
    raw_dir: Path,
    cleaned_dir: Path,
    validation_dir: Path,
    out_dir: Path,
    config: RegisterConfig,
    run_name: str,
    lineage: dict,
    kfp_run_id: str = "",
) -> dict:
    """Log and register the model (once per pipeline run), alias it, promote it when asked and
    the gate passed; write REGISTRATION; return the version as metrics."""
    mlflow = tracking.connect()
    from mlflow.entities import RunTag

    classifier_dir = require_dir(classifier_dir, "classifier", "finetune")
    eval_dir = Path(eval_dir)
    report = _read(eval_dir / artifacts.EVAL_REPORT, "evaluate")
    gate = _read(eval_dir / artifacts.GATE_REPORT, "evaluate")
    weights = weight_hashes(classifier_dir)
    tags = {**lineage_tags(raw_dir, cleaned_dir, validation_dir, run_name, lineage, kfp_run_id), WEIGHTS_SHA256_TAG: weights_digest(weights)}
    tags |= {GATE_TAG: "passed" if gate["passed"] else "failed", GATE_SUMMARY_TAG: gate["summary"][:4000]}
    metric_tags = {f"metric.{k}": f"{report[k]:.6f}" for k in METRIC_TAGS if k in report}

    client = mlflow.MlflowClient()
    parent = tracking.parent_run_id(run_name)
    with tempfile.TemporaryDirectory() as tmp:
        artifacts.write_json(Path(tmp) / artifacts.WEIGHTS, weights)
        client.log_artifact(parent, str(Path(tmp) / artifacts.WEIGHTS), "registration")
    for name in (artifacts.EVAL_REPORT, artifacts.GATE_REPORT, artifacts.GATE_MD, artifacts.GATE_PNG):
        client.log_artifact(parent, str(eval_dir / name), "evaluate")
    client.log_batch(parent, tags=[RunTag(k, v) for k, v in {**tags, **metric_tags}.items()])
    if config.dry_run:
        record = {"model_name": config.model_name, "version": None, "uri": "", "dry_run": True, "run_id": parent, "tags": tags}
        with artifacts.staged_dir(out_dir) as tmp:
            artifacts.write_json(tmp / artifacts.REGISTRATION, record)
        print(f"[register] dry run: no version created; lineage and weight hashes are on MLflow run {parent}", flush=True)
        return {"register/dry_run": 1}

    version, created, complete = _version_for_run(client, config, run_name, parent, classifier_dir, tags, metric_tags)
    if not (created or complete):
        print(f"[register] completing version {version}, left incomplete by an interrupted attempt of this run", flush=True)
    try:  # a new version counts only once its card, alias and record are all in place
        settings.fault_point("register.version_created")
        card = model_card(config.model_name, version, report, gate, tags, _read(Path(cleaned_dir) / artifacts.CLEAN_REPORT, "clean_tokenize"), classifier_dir, tasks.get(config.task))
        client.update_model_version(config.model_name, version, description=card)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / artifacts.MODEL_CARD).write_text(card)
            client.log_artifact(parent, str(Path(tmp) / artifacts.MODEL_CARD), "registration")
        settings.fault_point("register.card_written")
        moves = _move_alias(config, version, run_name, gate)
        settings.fault_point("register.alias_moved")
        client.set_model_version_tag(config.model_name, version, registry.STATE_TAG, registry.COMPLETE)
    except Exception as exc:
        # A server that still answers takes the version back; a dead one is not asked again
        # (the version stays marked incomplete, which every command ignores).
        if created and not tracking.is_unreachable(exc):
            with contextlib.suppress(Exception):
                client.delete_model_version(config.model_name, version)
        raise
    moves += _auto_promote(config, version, run_name, gate)
    uri = f"models:/{config.model_name}/{version}"
    record = {"model_name": config.model_name, "version": version, "uri": uri, "alias": config.alias, "moves": moves, "run_id": parent, "tags": tags}
    with artifacts.staged_dir(out_dir) as tmp:
        artifacts.write_json(tmp / artifacts.REGISTRATION, record)
    held = ", ".join(f"@{m['alias']}" for m in moves) or "aliases unchanged"
    print(f"[register] {uri} ({'new version' if created else 'already registered by this run'}; {held}); {gate['summary']}", flush=True)
    return {"register/version": int(version), "register/created": int(created), "register/promoted": int(any(m["alias"] == registry.CHAMPION for m in moves))}


# Scores copied onto the version as tags (those its task reports), so `lmforge models list` needs no run look-ups.
METRIC_TAGS = (
    "accuracy",
    "macro_f1",
    "baseline_majority_accuracy",
    "baseline_tfidf_accuracy",
    "perplexity",
    "control_accuracy",
    "pretraining_gain",
    "gain_over_tfidf",
    "gain_over_champion",
    "pearson",
    "spearman",
    "rmse",
    "baseline_mean_rmse",
    "baseline_ridge_pearson",
    "baseline_ridge_rmse",
    "control_pearson",
    "gain_over_ridge",
)


def _version_for_run(client, config: RegisterConfig, run_name: str, parent: str, classifier_dir: Path, tags: dict, metric_tags: dict) -> tuple[str, bool, bool]:
    """The version this pipeline run registered before (a re-run of the stage), else a new one
    with every lineage tag, and the incomplete mark, set in the same call. Returns (version,
    created, complete)."""
    import mlflow
    from transformers import AutoTokenizer

    task = tasks.get(config.task)
    try:
        client.get_registered_model(config.model_name)
    except mlflow.exceptions.MlflowException:
        try:
            client.create_registered_model(config.model_name, description=task.CARD["registered"])
        except mlflow.exceptions.MlflowException as exc:  # a concurrent run created it first
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    found = client.search_model_versions(f"name = '{config.model_name}' and tags.`{PIPELINE_RUN_NAME_TAG}` = '{run_name}'")
    if found:
        first = min(found, key=lambda v: int(v.version))
        return str(first.version), False, registry.is_complete(first.tags)
    model = task.load_model(classifier_dir)
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    # pyfunc (what `mlflow models serve` runs) calls the pipeline, which does not truncate: a text over
    # max_position would fail. It cuts at the head to the trained length (exact for truncation head;
    # head_tail's cut is components/shared/inputs.py's, which the gate uses).
    spec = getattr(model.config, inputs.INPUTS_CONFIG_KEY, None)
    serving = {"truncation": True, "max_length": spec["max_seq_len"]} if spec else None
    # run_id, not `with mlflow.start_run(run_id=parent)`: leaving that block would end the
    # pipeline's run as FINISHED before the pipeline has.
    info = mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task=task.MLFLOW_TASK,
        pip_requirements=pip_requirements(),
        metadata={"lmforge": tags},
        model_config=serving,
        run_id=parent,
    )
    # model_id ties the version to MLflow 3's logged model: a tracking server refuses a models:/m-...
    # source without it (the sqlite store lets it pass).
    state = {registry.STATE_TAG: registry.INCOMPLETE}
    version = client.create_model_version(config.model_name, info.model_uri, run_id=parent, tags={**tags, **metric_tags, **state}, model_id=info.model_id)
    return str(version.version), True, False


def _move_alias(config: RegisterConfig, version: str, run_name: str, gate: dict) -> list[dict]:
    """`alias` on every version, through the audited registry, so `lmforge models history` shows it."""
    status, actor = ("passed" if gate["passed"] else "failed"), f"pipeline:{run_name}"
    move = registry.move_alias(config.model_name, config.alias, version, reason=f"registered by pipeline run {run_name}", gate=status, actor=actor, action="register")
    return [move] if move["moved"] else []


def _auto_promote(config: RegisterConfig, version: str, run_name: str, gate: dict) -> list[dict]:
    """@champion too when the preset asks and the gate passed (promote re-reads the gate from the
    version's tags, and refuses an incomplete version)."""
    if not (config.auto_promote and gate["passed"]):
        return []
    reason = f"automatic promotion by pipeline run {run_name}: {gate['summary']}"
    move = registry.promote(config.model_name, version, reason=reason, actor=f"pipeline:{run_name}", action="auto-promote")
    return [move] if move["moved"] else []


def lineage_tags(raw_dir: Path, cleaned_dir: Path, validation_dir: Path, run_name: str, lineage: dict, kfp_run_id: str = "") -> dict:
    """Every tag that says where a version came from: code, data, config, tokenizer, run, images,
    validation, seeds and package versions."""
    manifest = _read(Path(raw_dir) / artifacts.MANIFEST, "ingest")
    clean = _read(Path(cleaned_dir) / artifacts.CLEAN_REPORT, "clean_tokenize")
    validation = _read(Path(validation_dir) / artifacts.VALIDATION, "validate")
    suites = list(validation.values())
    tags = {
        GIT_COMMIT_TAG: lineage.get("git_commit", ""),
        GIT_DIRTY_TAG: str(lineage.get("git_dirty", "")).lower(),
        CONFIG_HASH_TAG: lineage.get("config_hash", ""),
        CONFIG_ARTIFACT_TAG: "config.yaml",  # the whole resolved preset, on the version's run
        PRESET_TAG: lineage.get("preset", ""),
        SEEDS_TAG: json.dumps(lineage.get("seeds", {}), sort_keys=True),
        PIPELINE_RUN_NAME_TAG: run_name,
        KFP_RUN_ID_TAG: kfp_run_id,
        DATA_REPO_TAG: manifest.get("data_repo", ""),
        DATA_REV_TAG: manifest.get("data_rev", ""),
        DATA_MD5_TAG: manifest.get("data_md5", ""),
        DATA_FILES_MD5_TAG: json.dumps(manifest.get("files", {}), sort_keys=True),
        TOKENIZER_HASH_TAG: clean["tokenizer_hash"],
        VALIDATION_TAG: "passed" if all(s.get("success") for s in suites) else "failed",
        VALIDATION_SUITES_TAG: f"{sum(bool(s.get('success')) for s in suites)}/{len(suites)} passed",
        PACKAGES_TAG: json.dumps(package_versions(), sort_keys=True),
    }
    tags.update({image_tag(name): image for name, image in (lineage.get("images") or {}).items()})
    return {k: str(v) for k, v in tags.items()}


def weight_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every tensor's bytes, by name: equal hashes mean bit-identical weights."""
    from safetensors.numpy import load_file

    tensors = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        tensors.update(load_file(f))
    return {name: hashlib.sha256(t.tobytes()).hexdigest() for name, t in sorted(tensors.items())}


def weights_digest(hashes: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for p in LINEAGE_PACKAGES:
        try:
            found[p] = version(p)
        except PackageNotFoundError:
            found[p] = "absent"
    return found


LINEAGE_PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "mlflow", "kfp", "dvc", "great_expectations", "lmforge")


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p).split('+')[0]}" for p in SERVING_PACKAGES]


def _read(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: the {stage} stage must run before register")
    return artifacts.read_json(path)
