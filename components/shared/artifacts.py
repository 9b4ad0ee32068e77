"""On-disk formats passed between stages.

Every stage writes into its own output directory (a KFP artifact path). The names below are the
contract between a producer and its consumers; tests and components import them from here rather
than spelling file names twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ingest -> clean_tokenize
CORPUS = "corpus.parquet"  # doc_id: str, title: str, text: str
LABELED = "labeled.parquet"  # id: str, text: str, label: int class id (classification) or float target (regression), split: train|validation|test
MANIFEST = "manifest.json"  # data repo, rev, md5s and row counts (lineage)

# clean_tokenize -> validate / pretrain / finetune / evaluate
# CORPUS and LABELED again (cleaned; LABELED gains `input_ids`, a list of token ids), plus:
# Block splits are directories of int32 [n, block_size] .npy shards + index.json, packed, no
# padding; read them only through components.shared.shards.open_blocks (memory-mapped).
BLOCKS_TRAIN = "blocks_train"
BLOCKS_HELDOUT = "blocks_heldout"  # same, from held-out documents (perplexity)
TOKENIZER_DIR = "tokenizer"  # PreTrainedTokenizerFast.save_pretrained
CLEAN_REPORT = "clean_report.json"  # rows removed per rule, decontamination, token statistics, tokenizer hash
TASK_ADAPTIVE = "task_adaptive.parquet"  # doc_id, title, text: labeled train texts packed too (task_adaptive only)

# validate
VALIDATION = "validation.json"  # suite -> success and failed expectations
DATA_DOCS_DIR = "data_docs"  # great-expectations Data Docs site (index.html)

# pretrain / finetune: a Hugging Face model directory (save_pretrained) plus
HISTORY = "history.json"  # per-step training loss and learning rate
LOSS_CURVE = "loss_curve.png"

# evaluate
EVAL_REPORT = "eval.json"  # metrics, baselines, confusion matrix (classification)
CONFUSION_PNG = "confusion_matrix.png"  # classification
SCATTER_PNG = "scatter.png"  # regression: predicted against true test targets
EVAL_HTML = "report.html"  # scores beside baselines and the confusion matrix, one file (KFP UI)
GATE_REPORT = "gate.json"  # the promotion gate: rules, comparisons with intervals, passed or not
GATE_MD = "gate_report.md"  # the same for people, with GATE_PNG
GATE_PNG = "gate.png"

# register
REGISTRATION = "registration.json"  # model name, version, URI, MLflow run id
MODEL_CARD = "model_card.md"  # data, training, metrics, gate, lineage, intended use and limits
WEIGHTS = "weights.json"  # sha256 of every tensor of the classifier (what reproduce compares)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `final` and move it into place only on success.

    A stage that fails half way leaves nothing at `final`, so no consumer (or a rerun) can
    mistake a partial output for a complete one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
