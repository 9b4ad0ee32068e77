"""register: log the classifier to MLflow, create a model version with its lineage, alias it.

The version is created with all its lineage tags in one call and removed again if aliasing fails,
so the registry never holds a half-registered version.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from components.shared import artifacts, tracking
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.training import require_dir

# What the logged model needs at serving time, pinned to what trained it (read at run time).
SERVING_PACKAGES = ("torch", "transformers", "tokenizers", "numpy")


class RegisterConfig(StageConfig):
    model_name: str = Field("lmforge-sentiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$", description="registered model name in MLflow")
    alias: str = Field("challenger", pattern=r"^[A-Za-z0-9_-]{1,255}$", description="alias set on every new version (letters, digits, _ and -)")


def register(classifier_dir: Path, eval_dir: Path, raw_dir: Path, cleaned_dir: Path, validation_dir: Path, out_dir: Path, config: RegisterConfig, run_name: str, lineage: dict) -> dict:
    """Log and register the model; write REGISTRATION; return the version as metrics."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    mlflow = tracking.connect()
    classifier_dir = require_dir(classifier_dir, "classifier", "finetune")
    report = artifacts.read_json(Path(eval_dir) / artifacts.EVAL_REPORT)
    tags = lineage_tags(raw_dir, cleaned_dir, validation_dir, run_name, lineage)
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)

    client = mlflow.MlflowClient()
    parent = tracking.parent_run_id(run_name)
    with mlflow.start_run(run_id=parent):
        mlflow.set_tags(tags)
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-classification",
            pip_requirements=pip_requirements(),
            metadata={"lmforge": tags},
        )
        mlflow.log_artifact(str(Path(eval_dir) / artifacts.EVAL_REPORT), artifact_path="evaluate")
    try:
        client.get_registered_model(config.model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(config.model_name, description="LMForge sentiment classifier (BERT-style encoder pretrained by LMForge)")
    metric_tags = {f"metric.{k}": f"{report[k]:.6f}" for k in ("accuracy", "macro_f1", "baseline_majority_accuracy", "perplexity")}
    version = client.create_model_version(config.model_name, info.model_uri, run_id=parent, tags={**tags, **metric_tags})
    uri = f"models:/{config.model_name}/{version.version}"
    record = {"model_name": config.model_name, "version": version.version, "uri": uri, "alias": config.alias, "run_id": parent, "tags": tags}
    try:  # the version counts only once both the record and the alias are in place
        with artifacts.staged_dir(out_dir) as tmp:
            artifacts.write_json(tmp / artifacts.REGISTRATION, record)
            client.set_registered_model_alias(config.model_name, config.alias, version.version)
    except Exception:
        client.delete_model_version(config.model_name, version.version)
        raise
    print(f"[register] {uri} (alias @{config.alias})", flush=True)
    return {"register/version": int(version.version)}


def lineage_tags(raw_dir: Path, cleaned_dir: Path, validation_dir: Path, run_name: str, lineage: dict) -> dict:
    """Every tag that says where a version came from: code, data, config, tokenizer, run, images."""
    manifest = _read(Path(raw_dir) / artifacts.MANIFEST, "ingest")
    clean = _read(Path(cleaned_dir) / artifacts.CLEAN_REPORT, "clean_tokenize")
    validation = _read(Path(validation_dir) / artifacts.VALIDATION, "validate")
    tags = {
        "lmforge.git_commit": lineage.get("git_commit", ""),
        "lmforge.git_dirty": str(lineage.get("git_dirty", "")).lower(),
        "lmforge.config_hash": lineage.get("config_hash", ""),
        "lmforge.preset": lineage.get("preset", ""),
        "lmforge.pipeline_run_name": run_name,
        "lmforge.data_repo": manifest.get("data_repo", ""),
        "lmforge.data_rev": manifest.get("data_rev", ""),
        "lmforge.data_md5": manifest.get("data_md5", ""),
        "lmforge.tokenizer_hash": clean["tokenizer_hash"],
        "lmforge.validation": "passed" if all(s.get("success") for s in validation.values()) else "failed",
    }
    tags.update({f"lmforge.image.{name}": image for name, image in (lineage.get("images") or {}).items()})
    return {k: str(v) for k, v in tags.items()}


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p).split('+')[0]}" for p in SERVING_PACKAGES]


def _read(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: the {stage} stage must run before register")
    return artifacts.read_json(path)
