"""Settings that come from the environment, read in this one place.

Tracking URI, registry, credentials and the KFP host never come from YAML and are never written
into logs or compiled pipelines.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

# Set by the local CLI for its child tasks: a failing stage writes its one-line reason there.
ERROR_FILE_ENV = "LMFORGE_ERROR_FILE"


def code_dir() -> Path:
    """The source tree this package runs from (its git commit is the code's lineage)."""
    return Path(__file__).resolve().parents[2]


def project_dir() -> Path:
    """Where runs keep their state (data, mlflow.db, local_outputs): $LMFORGE_PROJECT_DIR, else
    the source tree when it is a checkout, else the current directory."""
    env = os.environ.get("LMFORGE_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    return code_dir() if (code_dir() / "pyproject.toml").exists() else Path.cwd()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else a sqlite store in the project (MLflow 3 refuses the file store)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_dir() / 'mlflow.db'}"


def artifact_location() -> str | None:
    """Where a new experiment keeps artifacts: `mlruns/` beside a local sqlite store's file (not
    wherever the command happened to run); a tracking server decides for itself."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()
    return None


def display_uri(uri: str) -> str:
    """A URI safe to print: user and password (https://user:pass@host) replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


# Environment variables whose values are credentials (MLFLOW_TRACKING_PASSWORD, KFP_TOKEN,
# AWS_SECRET_ACCESS_KEY, HF_TOKEN, ...): a name part, so TOKENIZERS_PARALLELISM is not one.
_SECRET_NAME = re.compile(r"(^|_)(PASSWORD|PASSWD|PASS|SECRET|TOKEN|CREDENTIALS?|API_KEY|ACCESS_KEY|PRIVATE_KEY)(_|$)", re.I)
_HARMLESS = {"", "0", "1", "true", "false", "yes", "no", "none", "null"}


def secrets() -> list[str]:
    """Every credential this process could print: the user:password of any URL in the environment
    (MLFLOW_TRACKING_URI first) and the value of every variable named like a secret."""
    from urllib.parse import unquote, urlsplit

    found = []
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and value.strip().lower() not in _HARMLESS:
            found.append(value)
        for url in re.findall(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@]+@", value):
            parts = urlsplit(url + "x")
            if parts.password:
                found += [f"{parts.username}:{parts.password}", parts.password, unquote(parts.password)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)  # longest first: "user:pass" before "pass"


def redact(text: str, known: list[str] | None = None) -> str:
    """`text` with every credential from `secrets()` replaced by ***."""
    for secret in secrets() if known is None else known:
        text = text.replace(secret, "***")
    return text


def image_registry() -> str:
    """Registry of the project's images (LMFORGE_IMAGE_REGISTRY), e.g. ghcr.io/lmforge."""
    return os.environ.get("LMFORGE_IMAGE_REGISTRY", "ghcr.io/lmforge")


def image_digests() -> dict[str, str]:
    """Digests to pin the images by, from LMFORGE_IMAGE_DIGESTS="cpu=sha256:...,train=sha256:..."
    (docker/build.sh --push prints the line); empty when unset: images are pinned by tag."""
    import re

    raw = os.environ.get("LMFORGE_IMAGE_DIGESTS", "").strip()
    digests = {}
    for item in filter(None, (s.strip() for s in raw.split(","))):
        kind, _, digest = item.partition("=")
        if kind not in ("cpu", "train") or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            # Imported from a command's body, so this becomes the CLI's one `error:` line.
            from components.shared.errors import UserError

            raise UserError(f"LMFORGE_IMAGE_DIGESTS entry {item!r} is not cpu=sha256:<64 hex> or train=sha256:<64 hex>: copy the line docker/build.sh --push printed")
        digests[kind] = digest
    return digests


def kfp_host() -> str:
    """The KFP API endpoint when `lmforge submit` gets no --host: $KFP_HOST."""
    return os.environ.get("KFP_HOST", "")


def kfp_token() -> str:
    """Bearer token for the KFP API ($KFP_TOKEN), e.g. from `kubectl create token`. Never printed."""
    return os.environ.get("KFP_TOKEN", "")


@contextlib.contextmanager
def task_environment(error_file: str) -> Iterator[None]:
    """What local child tasks inherit: this process's tracking URI and the CLI's error file."""
    with environment({"MLFLOW_TRACKING_URI": tracking_uri(), ERROR_FILE_ENV: error_file}):
        yield


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set `values` in the environment for the block, then put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def error_file() -> str:
    return os.environ.get(ERROR_FILE_ENV, "")


def quiet_environment() -> None:
    """Switch off telemetry and hub look-ups that would stall an offline machine."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # also silences transformers' weight-loading bars
    # The Rust tokenizer's thread pool on (packing measured 1.97x with a free core; see
    # clean_tokenize/packing.py). Set, not left unset, so tokenizers does not warn when a stage
    # forks a subprocess (git, dvc) after tokenizing; export false on an oversubscribed host.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # A tracking server that is down should fail within seconds, not after MLflow's default
    # seven retries with exponential back-off (minutes).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # MLflow prints "View run <name> at: <tracking URI>/#/..." whenever a run ends against a
    # server; that URI may carry user:password, and the commands print what matters themselves.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


# Fault injection for tests (tests/registry/test_register_faults.py, tests/local/test_faults_cli.py):
# `fault_point(name)` is a no-op unless $LMFORGE_FAULT_AT names it; then it creates
# $LMFORGE_FAULT_FILE and waits until the test has done its harm (killed the tracking server) and
# removed the file. The points are real places in the code ("<stage>.log" before a stage logs,
# "register.*" inside register), so what the test breaks is what a real outage would break there.
FAULT_AT_ENV, FAULT_FILE_ENV = "LMFORGE_FAULT_AT", "LMFORGE_FAULT_FILE"
FAULT_WAIT_S = 300


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_AT_ENV) != name or not os.environ.get(FAULT_FILE_ENV):
        return
    import time

    signal_file = Path(os.environ[FAULT_FILE_ENV])
    signal_file.write_text(name)
    deadline = time.monotonic() + FAULT_WAIT_S
    while signal_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


# Who moves an alias, for the registry's audit history (CI jobs and service accounts set it).
ACTOR_ENV = "LMFORGE_ACTOR"


def actor() -> str:
    """$LMFORGE_ACTOR, else user@host of this process."""
    env = os.environ.get(ACTOR_ENV, "").strip()
    if env:
        return env
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container uid with no passwd entry and no $USER
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def torchrun_rank() -> tuple[int, int, int] | None:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as set by torchrun for each of its processes, else None."""
    env = os.environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))


def child_environment(pythonpath: Path) -> dict:
    """This process's environment, with `pythonpath` first on PYTHONPATH (for `python -m` children)."""
    paths = [str(pythonpath)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
