"""Interrupted fine-tuning is restarted, and says so.

Fine-tuning keeps no checkpoints: its budget is minutes where pretraining's is hours, and a resume
would have to restore every rate of the search and the control mid-way. Its outputs are written
to a temporary folder and renamed when complete (artifacts.staged_dir), so a run killed with
`kill -9` leaves nothing half written that a later run could pick up. What it does leave is this
attempt marker (the pid and start time of the process), so the next attempt on the same inputs
can tell the user that it restarts from the pretrained encoder rather than resuming.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from components.shared import artifacts

# Knobs that change how fast, not what: the same training under another thread count is the same attempt.
_IGNORED = {"threads", "nproc", "device"}


def marker_path(project_dir: Path, config: dict, cleaned_dir: Path, pretrained_dir: Path) -> Path:
    """One marker per training: keyed by the config, the cleaned data's report and the pretrained weights."""
    digest = hashlib.sha256(json.dumps({k: v for k, v in config.items() if k not in _IGNORED}, sort_keys=True, default=str).encode())
    report = Path(cleaned_dir) / artifacts.CLEAN_REPORT
    digest.update(report.read_bytes() if report.is_file() else str(Path(cleaned_dir).resolve()).encode())
    for weights in sorted(Path(pretrained_dir).glob("*.safetensors")):
        with open(weights, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return Path(project_dir) / "local_outputs" / "checkpoints" / f"finetune-{digest.hexdigest()[:16]}.attempt.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def attempt(marker: Path, stage: str = "finetune") -> Iterator[str]:
    """Mark this attempt for its duration; yields "restart" when an earlier attempt on the same
    inputs was interrupted (its marker left behind by a process that is gone), else "start"."""
    marker = Path(marker)
    how = "start"
    with contextlib.suppress(OSError, ValueError, KeyError):
        earlier = json.loads(marker.read_text())
        if not _alive(int(earlier["pid"])) or int(earlier["pid"]) == os.getpid():
            how = "restart"
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(earlier["started"])))
            print(f"[{stage}] restarting: an earlier attempt on the same data and config (pid {earlier['pid']}, started {when}) was interrupted; "
                  f"fine-tuning keeps no checkpoints, so it starts again from the pretrained encoder at step 0 (nothing of the interrupted attempt is used)", flush=True)  # fmt: skip
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))
    os.replace(tmp, marker)
    try:
        yield how
    finally:  # ended, well or with an error it reported: only a killed process leaves the marker
        with contextlib.suppress(OSError):
            marker.unlink()
