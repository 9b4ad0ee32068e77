"""`lmforge data add NAME --corpus PATH --labeled PATH`: bring one's own data, get a preset.

The corpus (a file, or a folder of .txt/.md/.rst/.jsonl documents) is copied as it is to
`data/NAME/corpus[...]`; the labeled set (CSV/TSV/JSONL/Parquet, or a Hugging Face `datasets`
folder written by `save_to_disk`) becomes `data/NAME/labeled.parquet` with the columns ingest
reads (text, label, and split and id when the file has them), its labels kept as they are.
`data/` is then tracked by DVC as the demo data is (`dvc add data`, `dvc push` to the default
remote; see data_builders/demo_data.track), and the new `data.dvc` and the preset are committed with git, so a
run records a data revision that `lmforge reproduce` can return to.

The preset (`pipelines/configs/NAME.yaml` in the project, or `--preset-dir`) is the base preset
plus what the data says: the class names (finetune.label_names, index = id: the one place they
are named; ingest maps string labels by them, the model's id2label shows them), the registered
model name `lmforge-NAME`, and `max_seq_len: auto` / `max_chars` from the text lengths.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from components.ingest.folder import DOCUMENT_SUFFIXES, TABLE_SUFFIXES
from components.ingest.ingest import read_table
from components.shared.errors import UserError
from components.shared.splits import SPLITS, split_of
from pipelines.config import load_config, preset_path

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TEXT_NAMES = ("text", "sentence", "content", "document", "review", "body", "article")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "topic", "sentiment")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation", "test": "test"}
LONG_CHARS_QUANTILE = 0.99  # max_chars: texts above the train split's 99th percentile count as long
TOKENS_PER_WORD = 1.3  # WordPiece on English prose, for a warning only (auto measures real tokens)


def add_dataset(
    project: Path,
    name: str,
    corpus: str,
    labeled: str,
    *,
    base_preset: str = "demo",
    text_column: str = "",
    label_column: str = "",
    split_column: str = "",
    id_column: str = "",
    label_names: list[str] | None = None,
    preset_dir: str = "",
    push: bool = True,
    log: Callable[[str], object] = print,
) -> dict:
    """Copy, track, commit and write the preset; return {"preset", "model_name", "label_names", ...}."""
    from data_builders.demo_data import recorded_md5, track

    project = Path(project).resolve()
    if not NAME.match(name):
        raise UserError(f"dataset name {name!r} must be lowercase letters, digits, - and _ (it names data/{name}/, the preset and the model)")
    if not (project / ".dvc").is_dir() or not (project / ".git").exists():
        raise UserError(f"{project} is not a git + DVC project: run `git init && dvc init` there, or set LMFORGE_PROJECT_DIR to the LMForge checkout")
    target = project / "data" / name
    if target.exists():
        raise UserError(f"{target} already exists: choose another name, or remove it (and its preset) first")
    if recorded_md5(project / "data.dvc") and not (project / "data").is_dir():
        raise UserError("data.dvc records data that is not in data/: run `dvc pull` (or `lmforge data demo`) first, so that the new dataset joins it rather than replacing it")
    base = load_config(base_preset)  # fails early on a bad base, before anything is copied
    corpus_src, labeled_src = Path(corpus).expanduser(), Path(labeled).expanduser()
    for what, path in (("corpus", corpus_src), ("labeled set", labeled_src)):
        if not path.exists():
            raise UserError(f"{what} {path} not found: check the path")

    table, hf_names = _read_labeled(labeled_src)
    frame, columns = _canonical(table, text_column, label_column, split_column, id_column, labeled_src)
    names = _label_names(frame["label"], label_names or hf_names)
    if hf_names and not label_names:
        frame["label"] = frame["label"].map(lambda v: hf_names[int(v)])  # a ClassLabel's ids -> its names
    corpus_rel = _corpus_name(corpus_src)
    preset_path = Path(preset_dir).resolve() if preset_dir else project / "pipelines" / "configs"
    preset_path = preset_path / f"{name}.yaml"
    if preset_path.exists():
        raise UserError(f"preset {preset_path} already exists: choose another name or remove it")

    before = (project / "data.dvc").read_text() if (project / "data.dvc").exists() else None
    (project / ".dvc" / "tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="data-add-", dir=project / ".dvc" / "tmp") as tmp:
        staged = Path(tmp) / name
        staged.mkdir()
        if corpus_src.is_dir():
            shutil.copytree(corpus_src, staged / corpus_rel, ignore=shutil.ignore_patterns(".*"))
        else:
            shutil.copyfile(corpus_src, staged / corpus_rel)
        frame.to_parquet(staged / "labeled.parquet", index=False)
        target.parent.mkdir(exist_ok=True)
        os.replace(staged, target)  # one rename: data/NAME appears whole or not at all
    try:
        md5 = track(project, push, log)
        stats = length_stats(frame)
        preset = write_preset(preset_path, base, base_preset, name, corpus_rel, names, stats, frame, corpus_src)
        tracked = [project / "data.dvc", preset_path] + [p for p in (project / ".gitignore",) if p.exists()]  # dvc add may list /data there
        _commit(project, tracked, f"lmforge data add {name}: data/{name} tracked by DVC, preset {preset_path.name}")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        if before is not None:
            (project / "data.dvc").write_text(before)
        preset_path.unlink(missing_ok=True)
        raise
    counts = frame["split"].value_counts().to_dict() if "split" in frame else {}
    log(
        f"data/{name}: {len(frame):,} labeled rows ({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items())) or 'split by a hash of each id'}), "
        f"{len(names)} classes, columns {columns}; data.dvc records md5 {md5} (committed)"
    )
    return {"preset": str(preset_path), "model_name": preset["register"]["model_name"], "label_names": names, "md5": md5, "stats": stats}


def _corpus_name(src: Path) -> str:
    if src.is_dir():
        return "corpus"
    if src.suffix.lower() not in (".jsonl", ".csv", ".tsv", ".parquet"):
        raise UserError(
            f"corpus {src} is a {src.suffix or 'suffix-less'} file: give a .jsonl/.csv/.tsv/.parquet file with a text column, or a folder of {'/'.join(DOCUMENT_SUFFIXES + TABLE_SUFFIXES)} files"
        )
    columns = _corpus_columns(src)
    if "text" not in columns:  # ingest.text_column names the text of both files; the labeled one is written as `text`
        raise UserError(f"corpus file {src} has no 'text' column (columns: {', '.join(columns) or 'none'}): rename its text column to text")
    return f"corpus{src.suffix.lower()}"


def _corpus_columns(src: Path) -> list[str]:
    """The corpus file's column names, read from its header alone (a corpus may be large)."""
    import pyarrow.parquet as pq

    suffix = src.suffix.lower()
    if suffix == ".parquet":
        return list(pq.read_schema(src).names)
    with src.open(encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    if suffix == ".jsonl":
        try:
            row = json.loads(first)
        except json.JSONDecodeError:
            raise UserError(f"corpus file {src} does not start with a JSON line: fix it or give a folder of documents") from None
        return list(row) if isinstance(row, dict) else []
    return [c.strip().strip('"') for c in first.rstrip("\r\n").split("\t" if suffix == ".tsv" else ",")]


def _read_labeled(src: Path) -> tuple[pd.DataFrame, list[str] | None]:
    """The labeled table, and its class names when a `datasets` ClassLabel carries them."""
    if src.is_dir():
        return read_saved_dataset(src)
    return read_table(str(src)), None


def read_saved_dataset(folder: Path) -> tuple[pd.DataFrame, list[str] | None]:
    """A Hugging Face `save_to_disk` folder (Dataset or DatasetDict) read with pyarrow alone:
    Arrow stream files named by state.json, split names from dataset_dict.json."""
    import pyarrow as pa

    def one(split_dir: Path) -> tuple[pd.DataFrame, list[str] | None]:
        state, info = (split_dir / "state.json"), (split_dir / "dataset_info.json")
        if not state.is_file():
            raise UserError(f"{split_dir} is not a Hugging Face datasets folder (no state.json): give a labeled file, or a folder written by save_to_disk")
        tables = []
        for f in json.loads(state.read_text())["_data_files"]:
            with pa.memory_map(str(split_dir / f["filename"])) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
        features = json.loads(info.read_text()).get("features", {}) if info.is_file() else {}
        names = next((v.get("names") for v in features.values() if isinstance(v, dict) and v.get("_type") == "ClassLabel"), None)
        return pa.concat_tables(tables).to_pandas(), names

    splits_file = folder / "dataset_dict.json"
    if not splits_file.is_file():
        return one(folder)
    frames, names = [], None
    for split in json.loads(splits_file.read_text())["splits"]:
        if split.lower() not in SPLIT_ALIASES:
            raise UserError(f"{folder} has a split {split!r}: LMForge uses train, validation and test (also valid/val/dev)")
        df, names = one(folder / split)
        frames.append(df.assign(split=SPLIT_ALIASES[split.lower()]))
    return pd.concat(frames, ignore_index=True), names


def _pick(columns: list[str], given: str, candidates: tuple[str, ...], what: str, flag: str, path: Path) -> str:
    if given:
        if given not in columns:
            raise UserError(f"labeled set {path} has no {given!r} column (columns: {', '.join(columns)}): check {flag}")
        return given
    lower = {c.lower(): c for c in columns}
    for c in candidates:
        if c in lower:
            return lower[c]
    raise UserError(f"cannot tell which column of {path} holds the {what} (columns: {', '.join(columns)}): name it with {flag}")


def _canonical(df: pd.DataFrame, text: str, label: str, split: str, row_id: str, path: Path) -> tuple[pd.DataFrame, str]:
    """The columns ingest reads by default: text, label, and split / id when present."""
    cols = [str(c) for c in df.columns]
    text, label = _pick(cols, text, TEXT_NAMES, "text", "--text-column", path), _pick(cols, label, LABEL_NAMES, "labels", "--label-column", path)
    split = split or ("split" if "split" in cols else "")
    row_id = row_id or ("id" if "id" in cols else "")
    out = pd.DataFrame({"text": df[text].fillna("").astype(str)})
    if row_id:
        out.insert(0, "id", df[_pick(cols, row_id, (), "ids", "--id-column", path)].astype(str))
    labels = df[label]
    unlabeled = labels.isna() | (labels.astype(str).str.strip() == "")
    if pd.api.types.is_numeric_dtype(labels):
        unlabeled |= labels < 0
    if unlabeled.any():  # (a datasets ClassLabel marks a missing label -1)
        raise UserError(f"labeled set {path} has {int(unlabeled.sum())} rows without a label in column {label!r}: label or remove them")
    out["label"] = labels if pd.api.types.is_numeric_dtype(labels) else labels.astype(str).str.strip()
    if split:
        values = df[_pick(cols, split, (), "splits", "--split-column", path)].astype(str).str.strip().str.lower()
        unknown = sorted(set(values) - set(SPLIT_ALIASES))
        if unknown:
            raise UserError(f"labeled set {path} has split values {unknown}: use train, validation and test (also valid/val/dev)")
        out["split"] = values.map(SPLIT_ALIASES)
        if "validation" not in set(out["split"]):  # train/test only: a tenth of train, by text hash, validates
            moved = (out["split"] == "train") & out["text"].map(lambda t: split_of(t, 10, 0) == "validation")
            out.loc[moved, "split"] = "validation"
    missing = [s for s in SPLITS if "split" in out and s not in set(out["split"])]
    if missing:
        raise UserError(f"labeled set {path} has no {'/'.join(missing)} rows in its split column: give every split rows, or drop the column to split by hash")
    shown = ", ".join(f"{k}<-{v}" for k, v in (("text", text), ("label", label), ("split", split), ("id", row_id)) if v)
    return out, shown


def _label_names(labels: pd.Series, given: list[str] | None) -> list[str]:
    """Class names, index = id: given, else the sorted string labels, else the integer ids as text."""
    if given:
        return list(given)
    numbers = pd.to_numeric(labels, errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all():
        top = int(numbers.max())
        if numbers.min() < 0:
            raise UserError("integer labels must be ids from 0: map them, or pass --label-names")
        return [str(i) for i in range(top + 1)]  # name them with --label-names a,b,... to serve names
    return sorted(labels.astype(str).unique().tolist())


def length_stats(frame: pd.DataFrame) -> dict:
    """Characters and words of the (train) texts: what max_chars and the length note come from."""
    train = frame[frame["split"] == "train"] if "split" in frame else frame
    chars, words = train["text"].str.len().to_numpy(), train["text"].str.split().str.len().to_numpy()
    q = lambda a, p: int(np.quantile(a, p)) if len(a) else 0  # noqa: E731
    return {
        "rows": int(len(train)),
        "chars_p50": q(chars, 0.5),
        "chars_p95": q(chars, 0.95),
        "chars_p99": q(chars, LONG_CHARS_QUANTILE),
        "chars_max": int(chars.max()) if len(chars) else 0,
        "words_p95": q(words, 0.95),
    }


def write_preset(path: Path, base, base_name: str, name: str, corpus_rel: str, names: list[str], stats: dict, frame: pd.DataFrame, corpus_src: Path) -> dict:
    """The base preset's recipe with this dataset's paths, classes, model name and lengths."""
    data = yaml.safe_load(Path(preset_path(base_name)).read_text()) or {}
    cap = base.pretrain.model.max_position
    est_tokens = math.ceil(stats["words_p95"] * TOKENS_PER_WORD) + 2
    data["description"] = (
        f"{name}: {len(frame):,} labeled texts in {len(names)} classes, corpus data/{name}/{corpus_rel}; "
        f"written by `lmforge data add` on {datetime.now(UTC):%Y-%m-%d} from the {Path(base_name).stem} preset"
    )
    data["ingest"] = {**(data.get("ingest") or {}), "source": "dvc", "corpus_path": f"data/{name}/{corpus_rel}", "labeled_path": f"data/{name}/labeled.parquet", "dvc_file": "data.dvc"}
    clean = data.setdefault("clean_tokenize", {})
    clean.update({"max_seq_len": "auto", "max_seq_len_cap": cap, "max_chars": max(1, int(stats["chars_p99"]))})
    finetune = data.setdefault("finetune", {})
    finetune["label_names"] = names
    if len(names) > 2:
        finetune["select_metric"] = "macro_f1"  # several classes: accuracy hides a class the model never predicts
    data["validate"] = {**(data.get("validate") or {}), "max_split_overlap": 0.0}  # the demo presets tolerate the demo's own 2 duplicates; a new set: none
    data["register"] = {**(data.get("register") or {}), "model_name": f"lmforge-{name}"}
    data = {"description": data.pop("description"), **data}
    header = (
        f"# Written by `lmforge data add {name}` from the {Path(base_name).stem} preset. Edit freely; commit it with the data.\n"
        f"# Labeled texts ({'train split' if 'split' in frame else 'all rows: no split column'}): {stats['rows']:,}, characters p50 {stats['chars_p50']:,} / p95 {stats['chars_p95']:,} / p99 {stats['chars_p99']:,} / max {stats['chars_max']:,}, words p95 {stats['words_p95']:,}.\n"
        f"# max_seq_len auto: the 95th percentile of the real token lengths at clean_tokenize, at most max_seq_len_cap\n"
        f"# (the model's {cap} positions). max_chars: texts above the 99th percentile count as long (kept, truncated head+tail).\n"
        f"# Classes (finetune.label_names, index = id, the only place they are named): {', '.join(names)}.\n"
    )
    if est_tokens > cap:
        header += (
            f"# Note: ~{est_tokens} tokens at the 95th percentile exceed the {cap} positions: long texts keep their head and tail;\n"
            f"# raise pretrain.model.max_position and clean_tokenize.max_seq_len_cap to keep more.\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    load_config(str(path))  # the preset as written must load: a test of the code, every time
    return data


def _commit(project: Path, paths: list[Path], message: str) -> None:
    """git add + commit of exactly `paths` (the user's other staged work stays out of it)."""
    rel = [str(p.relative_to(project)) if p.is_relative_to(project) else None for p in paths]
    rel = [r for r in rel if r]
    for args in (["add", "--", *rel], ["commit", "-q", "-m", message, "--", *rel]):
        out = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"git {args[0]} failed in {project} ({last}): set a git identity (git config user.email ...) and run again")
