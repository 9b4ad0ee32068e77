"""Concurrent alias moves in separate processes, and the figures that say whether they held.

Plain functions (no pytest), shared by tests/registry/test_concurrent_moves.py and the 8-way
pipeline load test (tests/local/test_load.py): `concurrent_moves` starts one process per move,
lines them up behind a start file so they hit the tracking server together, and returns each
one's outcome; `history_figures` reads the history back and counts what a broken lock shows
(duplicated or missing sequence numbers, moves lost, an alias that is not the last record's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

# One move in a child process: import, say "ready", wait for the start file, move, print the result.
_CHILD = r"""
import json, os, sys, time
from components.shared import registry
from components.shared.errors import UserError
op, arg, go = sys.argv[1], sys.argv[2], sys.argv[3]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
try:
    rec = registry.promote(arg, sys.argv[4]) if op == "promote" else registry.rollback(arg)
    print(json.dumps({"ok": True, "moved": rec["moved"], "seq": rec["seq"], "to": rec["to_version"]}))
except UserError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""


def concurrent_moves(tracking_uri: str, model: str, ops: list[tuple[str, str | None]], folder: Path, timeout_s: float = 600) -> list[dict]:
    """Run each (op, version) of `ops` ("promote", v) / ("rollback", None) in its own process,
    all released at once; returns their results in order (ok, moved, seq, to / error)."""
    go = folder / f"go-{time.monotonic_ns()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "LMFORGE_ACTOR": "load@test"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, op, model, str(go), version or ""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for op, version in ops
    ]  # fmt: skip
    for p in procs:  # every child imported and waiting: the moves start together
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"a move process did not start: {line} {p.stderr.read()[-2000:]}")
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout_s)
        if p.returncode != 0 or not out.strip():
            raise RuntimeError(f"a move process failed (exit {p.returncode}): {err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def history_figures(model: str, alias: str = "champion", expected_moves: int | None = None) -> dict:
    """What the history of `model` says after a load: counts that must all be 0, and whether the
    alias equals the last done record's target (reads MLFLOW_TRACKING_URI of this process)."""
    from components.shared import registry

    records, problems = registry.audit(model)
    seqs = [r["seq"] for r in records]
    done = [r for r in records if r["alias"] == alias and r["state"] == "done"]
    holder = registry.alias_holders(model).get(alias)
    figures = {
        "records": len(records),
        "duplicated": sum(n - 1 for n in Counter(seqs).values()),
        "gaps": len(set(range(1, max(seqs, default=0) + 1)) - set(seqs)),
        "pending": sum(r["state"] == "unconfirmed" for r in records),
        "problems": problems,
        "alias_is_last_record": bool(done) and done[-1]["to_version"] == holder,
        # a move is lost when its from_version is not the alias's holder after the move before it
        "broken_links": sum(a["to_version"] != b["from_version"] for a, b in zip(done, done[1:])),
    }
    if expected_moves is not None:
        figures["lost"] = expected_moves - len(done)
    return figures
