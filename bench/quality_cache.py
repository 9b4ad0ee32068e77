"""The stage outputs of `bench.quality`, cached on disk and keyed by what determines them.

A stage's key hashes its own config section and the keys (or, for the pretraining corpus, the file
contents) of its inputs. So one clean_tokenize output serves every budget and row that leaves its
section alone, and pretrain is keyed by the tokenizer and packed blocks rather than by the labeled set:
every set is tokenized with the same corpus tokenizer, so one pretrained encoder serves them all, and
the classifier and its random-init control both come from the same finetune output.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from components.shared import artifacts

METRICS = "bench_metrics.json"  # written last into a stage's folder: present = complete
RAN_S = "bench/ran_s"  # in METRICS: the seconds the stage took when it ran, which a cached cell reports again
CORPUS_SIDE = (artifacts.TOKENIZER_DIR, artifacts.BLOCKS_TRAIN, artifacts.BLOCKS_HELDOUT)
IMPORTS = {"evaluate": ("finetune",), "init": ("pretrain",)}  # stage code another stage (or the bench's init) runs


def key(stage: str, section: dict, inputs: dict[str, str]) -> str:
    """16 hex digits of sha256 over the stage name, its code, its config section and its inputs' keys.

    The code counts: once evaluate learns a new baseline, its cached reports (without it) are stale."""
    body = json.dumps({"stage": stage, "code": code_digest(stage), "config": section, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@functools.cache
def code_digest(stage: str) -> str:
    """sha256 over the stage's own package and every package that is not a stage (shared/, and
    objectives/ and tasks/ where they exist); another stage's code counts only where it is imported."""
    from pipelines.config import STAGES

    components = Path(__file__).resolve().parents[1] / "components"
    mine = {stage, *IMPORTS.get(stage, ())}
    folders = [d for d in components.iterdir() if d.is_dir() and (d.name not in STAGES or d.name in mine)]
    h = hashlib.sha256()
    for path in sorted(p for folder in folders for p in folder.rglob("*.py")):
        h.update(path.relative_to(components).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(root: Path, parts: tuple[str, ...] = CORPUS_SIDE) -> str:
    """sha256 over the relative names and bytes of every file under root/<part> for each part."""
    h = hashlib.sha256()
    for part in parts:
        for path in sorted(p for p in (Path(root) / part).rglob("*") if p.is_file()):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + file_digest(path).encode())
    return h.hexdigest()


class Cache:
    """local_outputs/bench-quality/<stage>-<key>/: one folder per distinct stage run."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.log: dict[str, dict] = {}

    def stage(self, name: str, stage_key: str, run: Callable[[Path], dict]) -> Path:
        """The folder of `name` under `stage_key`, running `run(folder)` first when it is not complete."""
        out = self.root / f"{name}-{stage_key}"
        cached = (out / METRICS).is_file()
        start = time.perf_counter()
        if cached:
            ran = artifacts.read_json(out / METRICS).get(RAN_S)  # None: filled before the cache kept it
        else:
            if out.exists():  # a run killed before it finished: start over
                shutil.rmtree(out)
            metrics = run(out)
            ran = round(time.perf_counter() - start, 1)
            artifacts.write_json(out / METRICS, {**metrics, RAN_S: ran})
        self.log[name] = {"key": stage_key, "cached": cached, "seconds": round(time.perf_counter() - start, 1), "ran_s": ran}
        return out

    def cleaned(self, config) -> Path:
        """ingest -> clean_tokenize: the cleaned folder every later stage reads."""
        from components.clean_tokenize.clean_tokenize import clean_tokenize
        from components.ingest.ingest import ingest

        section = config.section
        files = {p: file_digest(p) for p in (config.ingest.corpus_path, config.ingest.labeled_path)}
        raw = self.stage("ingest", key("ingest", section("ingest"), files), lambda out: ingest(out, config.ingest))
        return self.stage("clean_tokenize", key("clean_tokenize", section("clean_tokenize"), {"raw": raw.name}), lambda out: clean_tokenize(raw, out, config.clean_tokenize))

    def cell(self, config, budget: int) -> dict:
        """ingest -> clean_tokenize -> pretrain (or the untrained encoder, budget 0) -> finetune -> evaluate."""
        from components.evaluate.evaluate import evaluate
        from components.finetune.finetune import finetune
        from components.pretrain.pretrain import pretrain

        self.log = {}
        section = config.section
        clean = self.cleaned(config)
        corpus = {"corpus": tree_digest(clean)}
        if budget:
            pre_key = key("pretrain", section("pretrain"), corpus)
            ckpt = self.root / "checkpoints" / pre_key  # an interrupted long run resumes here
            encoder = self.stage("pretrain", pre_key, lambda out: pretrain(clean, out, config.pretrain, checkpoint_dir=ckpt))
        else:
            start = {k: section("pretrain").get(k) for k in ("model", "init_from", "seed")}
            encoder = self.stage("init", key("init", start, corpus), lambda out: initial_encoder(clean, out, config.pretrain))
        tuned = self.stage("finetune", key("finetune", section("finetune"), {"clean": clean.name, "encoder": encoder.name}), lambda out: finetune(clean, encoder, out, config.finetune))
        inputs = {"clean": clean.name, "encoder": encoder.name, "classifier": tuned.name}
        scored = self.stage("evaluate", key("evaluate", section("evaluate"), inputs), lambda out: evaluate(clean, encoder, tuned, out, config.evaluate, model_name=None))
        return {"finetune": tuned, "evaluate": scored, "log": dict(self.log)}


def initial_encoder(cleaned_dir: Path, out_dir: Path, config) -> dict:
    """Budget 0: the encoder pretraining would start from (seeded random init, or init_from's
    checkpoint), saved untrained, so finetune and evaluate run on it unchanged."""
    from transformers import AutoTokenizer

    from components.shared.modeling import build_mlm, load_mlm
    from components.shared.training import seed_everything

    seed_everything(config.seed, config.threads)
    tokenizer = AutoTokenizer.from_pretrained(Path(cleaned_dir) / artifacts.TOKENIZER_DIR)
    model = load_mlm(config.init_from) if config.init_from else build_mlm(config.model, tokenizer)
    with artifacts.staged_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {"pretrain/steps": 0}
