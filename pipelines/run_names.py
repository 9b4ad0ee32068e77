"""Pipeline run names: unique by default, checked before anything runs, one live run per name.

A run name becomes a log file name (`local_outputs/logs/<name>.log`), an MLflow tag that search
filters quote, and a parameter of every KFP task. So it is limited to letters, digits, `.`, `_`
and `-` (no path separator, no quote), and under kfp.local it may not contain `python3`: kfp.local
replaces that string in every task argument with the interpreter's path
(kfp/local/subprocess_task_handler.py, `replace_python_executable`). The same rewrite would hit
any other argument, so `kfp_local_safe` refuses every argument (data paths, config values) that
contains it, naming the key.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from components.shared.errors import UserError

ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
REWRITTEN = "python3"  # what kfp.local rewrites in task arguments
SUFFIX_BYTES = 3  # 6 hex digits: two runs started in the same second still differ (1 in 16.7M)


def new_run_name(stem: str) -> str:
    """`<stem>-<UTC timestamp>-<random hex>`, with `stem` reduced to the allowed characters."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", stem.replace(REWRITTEN, "py3")).strip("-._")[:60] or "lmforge"
    return f"{safe}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(SUFFIX_BYTES)}"


def check_run_name(name: str, local: bool = True) -> str:
    """`name` if it may name a run, else one UserError line saying what is allowed."""
    if not ALLOWED.fullmatch(name):
        raise UserError(
            f"run name {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit (it names a log file and an MLflow run), e.g. --run-name sentiment-v2"
        )
    if local and REWRITTEN in name:
        raise UserError(f"run name {name!r} contains {REWRITTEN!r}, which kfp.local rewrites into the interpreter's path: choose another --run-name")
    return name


def kfp_local_safe(arguments: dict, pipeline_root: Path) -> None:
    """Refuse any pipeline argument, or the pipeline root, that kfp.local would rewrite."""
    if REWRITTEN in str(pipeline_root):
        raise UserError(f"the project folder {pipeline_root} contains {REWRITTEN!r}, which kfp.local rewrites in task arguments: set LMFORGE_PROJECT_DIR to another folder")
    for key, value in _leaves(arguments):
        if REWRITTEN in value:
            raise UserError(
                f"{_name(key)} {_short(value)!r} contains {REWRITTEN!r}, which kfp.local rewrites into the interpreter's path: move or rename the file or folder so its path does not contain it"
            )


def _leaves(value, key: tuple = ()):
    """(key path, string) for every string in nested dicts and lists."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*key, str(k)))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, (*key, str(i)))


def _name(key: tuple) -> str:
    """The pipeline argument's name as the user gave it: `ingest.corpus_path`, `--data-rev`."""
    head, rest = key[0], key[1:]
    if head.endswith("_config"):
        return ".".join((head.removesuffix("_config"), *rest))
    if head == "lineage":
        return "the preset name" if rest[:1] == ("preset",) else "lineage." + ".".join(rest)
    return "--" + head.replace("_", "-")


def _short(value: str) -> str:
    return value if len(value) <= 120 else value[:117] + "..."
