"""Property-based fuzz of the input boundaries (hypothesis): whatever arrives, the config loader
gives a config or one UserError line, and the labeled-file readers give a canonical table or one
UserError line, never another exception.

Deterministic and small: derandomized (the same examples every run, no example database), with
max_examples sized so the file runs in well under a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tiny_data import corpus_documents

from components.ingest.ingest import IngestConfig, ingest
from components.shared.errors import UserError
from pipelines.config import PipelineConfig, load_config

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow])


def _keys(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out += _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


REAL_KEYS = _keys(load_config("tiny").resolved())
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
yaml_text = st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()), st.text(max_size=30))
keys = st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=20), st.lists(st.sampled_from(["pretrain", "model", "gate", "x", "", "cluster", "stages"]), min_size=1, max_size=4).map(".".join))


def _one_line(exc: UserError) -> None:
    message = str(exc)
    assert message and "\n" not in message and len(message) < 1500, message


@FUZZ
@given(overrides=st.lists(st.one_of(st.tuples(keys, yaml_text).map("=".join), st.text(max_size=30)), max_size=4))
def test_random_overrides_give_a_config_or_one_line(overrides):
    try:
        assert isinstance(load_config("tiny", overrides), PipelineConfig)
    except UserError as exc:
        _one_line(exc)


documents = st.one_of(
    st.dictionaries(st.sampled_from(["pretrain", "finetune", "clean_tokenize", "evaluate", "cluster", "description", "other"]), values, max_size=4),
    values,
)


@FUZZ
@given(document=documents, raw=st.one_of(st.none(), st.text(max_size=80)), overrides=st.lists(st.tuples(st.sampled_from(REAL_KEYS), yaml_text).map("=".join), max_size=2))
def test_random_yaml_presets_give_a_config_or_one_line(document, raw, overrides):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(raw if raw is not None else yaml.safe_dump(document))
        try:
            assert isinstance(load_config(str(path), overrides), PipelineConfig)
        except UserError as exc:
            _one_line(exc)


# --- the labeled-file readers ----------------------------------------------------------------

CORPUS = "".join(json.dumps(d) + "\n" for d in corpus_documents(3))
cell = st.one_of(st.text(max_size=12), st.integers(-5, 5), st.floats(allow_nan=True), st.none(), st.booleans())
label = st.one_of(st.integers(-2, 3), st.integers(0, 1), st.sampled_from(["0", "1", " 1 ", "1.0"]), cell)  # mostly usable, sometimes not
split = st.one_of(st.sampled_from(["train", "validation", "test"]), st.sampled_from(["train", "test"]), cell)
rows = st.lists(st.fixed_dictionaries({"id": st.one_of(st.text(max_size=8), cell), "text": st.one_of(st.text(max_size=40), cell), "label": label}, optional={"split": split}), max_size=8)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


def _ingest(suffix: str, payload: bytes) -> None:
    """ingest with a fixed good corpus and `payload` as the labeled file: a table or one line."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "corpus.jsonl").write_text(CORPUS)
        (tmp / f"labeled{suffix}").write_bytes(payload)
        config = IngestConfig(source="path", corpus_path=str(tmp / "corpus.jsonl"), labeled_path=str(tmp / f"labeled{suffix}"))
        try:
            metrics = ingest(tmp / "raw", config)
        except UserError as exc:
            _one_line(exc)
            assert not (tmp / "raw").exists()  # nothing half-written
            event(f"one line: {' '.join(str(exc).split()[3:6])}")  # --hypothesis-show-statistics shows the mix
            return
        event("a canonical table")
        labeled = pd.read_parquet(tmp / "raw" / "labeled.parquet")
        assert set(labeled["split"]) <= {"train", "validation", "test"} and labeled["label"].dtype == "int64"
        assert sum(v for k, v in metrics.items() if k.endswith("_rows")) == len(labeled)


@FUZZ
@given(suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]), payload=st.binary(max_size=300))
def test_random_bytes_in_any_labeled_format_give_a_table_or_one_line(suffix, payload):
    _ingest(suffix, payload)


def _as_bytes(frame: pd.DataFrame, suffix: str, encoding: str) -> bytes:
    if suffix == ".parquet":
        buf = io.BytesIO()
        frame.astype(str).to_parquet(buf) if frame.empty else frame.map(lambda v: None if v is None else str(v)).to_parquet(buf)
        return buf.getvalue()
    if suffix == ".jsonl":
        return "".join(json.dumps(r, default=str) + "\n" for r in frame.to_dict("records")).encode(encoding, errors="replace")
    return frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",").encode(encoding, errors="replace")


@FUZZ
@given(suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]), table=rows, encoding=encodings)
def test_random_rows_in_random_encodings_give_a_table_or_one_line(suffix, table, encoding):
    frame = pd.DataFrame(table, columns=["id", "text", "label", "split"]) if table and any("split" in r for r in table) else pd.DataFrame(table)
    _ingest(suffix, _as_bytes(frame, suffix, encoding))


def test_the_fuzz_is_deterministic():
    assert FUZZ.derandomize and FUZZ.database is None


@pytest.mark.parametrize("override", ["pretrain.max_steps=[unclosed", "pretrain.max_steps={a: b", "pretrain.x=*alias"])
def test_an_override_that_is_not_yaml_is_one_line(override):
    with pytest.raises(UserError, match="is not valid YAML") as info:
        load_config("tiny", [override])
    _one_line(info.value)
