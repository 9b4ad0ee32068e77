"""8 pipeline runs at once against one real `mlflow server` on 127.0.0.1, all registering the same
model: every version complete (card, alias move, record), and a strict alias history.

Not part of `make test` (8 whole runs take many minutes on 2 cores): `make test-load` runs it and
prints the figures of the README's reliability table. LMFORGE_LOAD_RUNS changes the number of runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from concurrency import history_figures

RUNS = int(os.environ.get("LMFORGE_LOAD_RUNS", "8"))
ONE_THREAD = ["pretrain.threads=1", "finetune.threads=1", "evaluate.threads=1"]  # 8 runs share the cores


@pytest.mark.load
@pytest.mark.slow
@pytest.mark.network
def test_concurrent_pipeline_runs_register_complete_versions_and_a_strict_history(demo_project, mlflow_server, tmp_path, monkeypatch):
    import mlflow

    model = f"lmforge-load-{uuid.uuid4().hex[:6]}"  # the session's server is shared
    procs = []
    for i in range(RUNS):  # a project each: the runs share the tracking server, not their outputs
        project = tmp_path / f"project-{i}"
        shutil.copytree(demo_project, project, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", "local_outputs"))
        env = {**os.environ, "LMFORGE_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": mlflow_server, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}
        args = ["run", "--config", "tiny", "--run-name", f"load-{i}-{model[-6:]}", "--set", f"register.model_name={model}", *(x for s in ONE_THREAD for x in ("--set", s))]
        log = (tmp_path / f"run-{i}.log").open("w")
        procs.append((subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], stdout=log, stderr=subprocess.STDOUT, env=env), log))
    start = time.monotonic()
    codes = [p.wait(timeout=3600) for p, _ in procs]
    elapsed = time.monotonic() - start
    failed = [i for i, c in enumerate(codes) if c != 0]
    assert not failed, "\n\n".join((tmp_path / f"run-{i}.log").read_text()[-3000:] for i in failed)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = mlflow.MlflowClient(mlflow_server)
    versions = client.search_model_versions(f"name = '{model}'")
    from components.shared import registry

    records = registry.history(model)
    registered = {r["to_version"] for r in records if r["action"] == "register" and r["state"] == "done"}
    incomplete = [v.version for v in versions if not (v.description or "").strip() or str(v.version) not in registered]
    challenger = history_figures(model, "challenger", expected_moves=RUNS)  # each run moves @challenger to its version
    champion = history_figures(model, "champion")
    print(f"\n{RUNS} concurrent runs in {elapsed:.0f} s: versions {len(versions)}, incomplete {len(incomplete)}, records {challenger['records']}, "
          f"duplicated {challenger['duplicated']}, gaps {challenger['gaps']}, lost {challenger['lost']}, pending {challenger['pending']}, "
          f"broken links {challenger['broken_links'] + champion['broken_links']}, alias = last record: {challenger['alias_is_last_record']} / {champion['alias_is_last_record']}")  # fmt: skip
    assert len(versions) == RUNS and incomplete == []
    assert {k: challenger[k] for k in ("duplicated", "gaps", "pending", "lost", "broken_links", "problems")} == {"duplicated": 0, "gaps": 0, "pending": 0, "lost": 0, "broken_links": 0, "problems": []}
    assert challenger["alias_is_last_record"] and champion["broken_links"] == 0
    assert champion["alias_is_last_record"] or not any(r["alias"] == "champion" for r in records)
