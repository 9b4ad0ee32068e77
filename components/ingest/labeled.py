"""The labeled set in its canonical form: id, text, label, split.

The label column is parsed and checked by the task (components/tasks/, `parse_labels`): class
ids for classification, numbers for regression. A file without an id column gets ids from a hash
of each text (copies of one text share its split); without a split column, the split comes from
a hash of the id.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from components import tasks
from components.shared.errors import UserError
from components.shared.splits import SPLITS, split_of


def require_column(df: pd.DataFrame, column: str, what: str, path: str, key: str) -> None:
    if column not in df.columns:
        cols = ", ".join(map(str, df.columns)) or "none"
        raise UserError(f"{what} file {path} has no {column!r} column (columns: {cols}): add it or set ingest.{key}")


def canonical_labeled(df: pd.DataFrame, config) -> pd.DataFrame:
    """The labeled file as id, text, label (the task's schema), split; rows sampled to max_labeled."""
    path = config.labeled_path
    require_column(df, config.text_column, "labeled", path, "text_column")
    require_column(df, config.label_column, "labeled", path, "label_column")
    texts = df[config.text_column].fillna("").astype(str)
    if config.id_column in df:
        ids = df[config.id_column].astype(str)
        split_keys = ids
    else:
        # No id column: a hash of the text, so reordering the file moves no row between splits.
        # Copies of one text share the split (the k-th copy's id gets "-k"), so they cannot leak.
        split_keys = texts.map(text_id)
        ids = split_keys + split_keys.groupby(split_keys).cumcount().map(lambda k: f"-{k}" if k else "")
        print(f"[ingest] labeled file {path} has no {config.id_column!r} column: ids and the split come from a hash of each text (row order does not matter)", flush=True)
    labels = tasks.get(config.task).parse_labels(df[config.label_column], config.label_names, path, config.label_column)
    if config.split_column in df:  # plain str per cell, as classification's parse_labels: a str column keeps a missing value as NaN
        split = pd.Series(["" if _missing(v) else str(v).strip().lower() for v in df[config.split_column]], index=df.index, dtype=object)
    else:
        split = split_keys.map(split_of)
    out = pd.DataFrame({"id": ids, "text": texts, "label": labels, "split": split})
    unknown = sorted(set(out["split"]) - set(SPLITS))
    if unknown:
        raise UserError(f"labeled file {path} has unknown split values {unknown}: use train, validation and test")
    if config.max_labeled and len(out) > config.max_labeled:
        # Sample by hash rank rather than head(): the file may be sorted by label or source.
        rank = out["id"].map(_hash_rank)
        out = out.loc[rank.sort_values(kind="stable").index[: config.max_labeled]]
    if out.empty:
        raise UserError(f"labeled file {path} has no rows: point ingest.labeled_path at a labeled set")
    return out.sort_values("id", kind="stable").reset_index(drop=True)


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def text_id(text: str) -> str:
    """The id of a labeled row that has none: the first 16 hex digits of the text's sha256."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _hash_rank(row_id: str) -> int:
    return int(hashlib.sha256(f"sample:{row_id}".encode()).hexdigest()[:12], 16)
