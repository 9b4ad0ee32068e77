"""kill -9 in the middle of fine-tuning: nothing half written, and the next attempt says it restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tiny_data import FINETUNE

from components.finetune.attempt import marker_path
from components.finetune.finetune import FinetuneConfig, finetune
from components.shared import artifacts

# Long enough that the kill lands mid-training (the tiny budget is 40 steps).
PARAMS = {**FINETUNE, "max_steps": 4000, "eval_every": 2000, "control": False}

RUN = """
import json, sys
from pathlib import Path
from components.finetune.finetune import FinetuneConfig, finetune
a = json.loads(sys.argv[1])
finetune(Path(a["cleaned"]), Path(a["mlm"]), Path(a["out"]), FinetuneConfig.from_params(a["params"], "finetune"))
"""


def test_killed_finetune_restarts_cleanly_and_says_so(cleaned_dir, mlm_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(tmp_path))
    marker = marker_path(tmp_path, FinetuneConfig.from_params(PARAMS, "finetune").model_dump(), cleaned_dir, mlm_dir)
    args = json.dumps({"cleaned": str(cleaned_dir), "mlm": str(mlm_dir), "out": str(tmp_path / "killed"), "params": PARAMS})
    proc = subprocess.Popen([sys.executable, "-c", RUN, args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)  # inside the training loop
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"fine-tuning ended before it could be killed: {proc.stdout.read()[-2000:]}"
    assert marker.exists() and not (tmp_path / "killed").exists()  # nothing half written, the attempt on record

    config = FinetuneConfig.from_params({**PARAMS, "max_steps": 12, "eval_every": 6}, "finetune")
    marker_short = marker_path(tmp_path, config.model_dump(), cleaned_dir, mlm_dir)
    marker_short.write_text(marker.read_text())  # the same interrupted attempt, for the short budget that finishes here
    finetune(cleaned_dir, mlm_dir, tmp_path / "again", config)
    out = capsys.readouterr().out
    assert "[finetune] restarting: an earlier attempt on the same data and config" in out and "at step 0" in out
    assert (tmp_path / "again" / artifacts.HISTORY).is_file() and not marker_short.exists()

    finetune(cleaned_dir, mlm_dir, tmp_path / "third", config)  # completed before: a plain start, no message
    assert "restarting" not in capsys.readouterr().out
