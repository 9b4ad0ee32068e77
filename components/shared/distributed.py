"""Data-parallel training under torchrun: who am I, re-launching a stage on N processes, reducing.

A stage asks for N processes (`pretrain.nproc`); its function then re-launches itself through
`python -m torch.distributed.run --standalone --nproc-per-node N -m <worker> <request.json>` and
waits. Every rank runs the same loop on its own slice of each global batch (so the global batch,
and therefore the result, is the same as one process up to the order of float reductions); only
rank 0 writes outputs, checkpoints and the result file the launcher reads back. When an outer
torchrun (a PyTorchJob, a Kubeflow Trainer job) already set WORLD_SIZE, the stage runs in place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from components.shared import settings
from components.shared.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place, from the variables torchrun sets (one process when absent)."""
    rank = settings.torchrun_rank()
    return World(*rank) if rank else World()


def under_torchrun() -> bool:
    return settings.torchrun_rank() is not None


def init(device_type: str) -> World:
    """Join the process group when there is more than one rank: nccl on GPUs, gloo on CPUs."""
    import torch.distributed as dist

    w = world()
    if w.size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return w


def resolve_device(choice: str, world: World, stage: str = "pretrain"):
    """The torch device for `<stage>.device` (auto = cuda when visible); under torchrun, this rank's GPU."""
    import torch

    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{stage}.device is cuda but no CUDA device is visible: set {stage}.device=cpu or auto")
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def launch(worker_module: str, request: dict, nproc: int) -> dict:
    """Run `python -m worker_module request.json` on `nproc` local processes; return rank 0's result.

    The request and the result travel as JSON files in a temporary folder; a rank that fails with a
    UserError writes its one line into the result file, which is raised here again, so the
    caller sees the same error as in a single process.
    """
    with tempfile.TemporaryDirectory(prefix="lmforge-torchrun-") as workdir:
        return _launch(worker_module, request, nproc, Path(workdir))


def _launch(worker_module: str, request: dict, nproc: int, workdir: Path) -> dict:
    request_file, result_file = workdir / "request.json", workdir / "result.json"
    request_file.write_text(json.dumps({**request, "result_file": str(result_file)}, default=str))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", worker_module, str(request_file)]
    # Workers inherit stdout/stderr: their progress lines are the task's log. PYTHONPATH keeps
    # `-m components...` importable when the launcher runs from elsewhere than the source tree.
    proc = subprocess.run(cmd, env=settings.child_environment(settings.code_dir()))
    result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if "error" in result:
        raise UserError(result["error"])
    if proc.returncode != 0 or "metrics" not in result:
        raise RuntimeError(f"torchrun with {nproc} processes exited with status {proc.returncode}: see the ranks' output above")
    return result["metrics"]


def serve(request_file: str, stage_run) -> None:
    """A stage worker's body on every rank: `stage_run(request)` gives the metrics; rank 0 writes
    them, or a UserError's one line, to the result file `launch` reads back (exit 2 on an error)."""
    request = json.loads(Path(request_file).read_text())
    try:
        metrics = stage_run(request)
    except UserError as exc:
        if world().is_main:
            write_result(request["result_file"], {"error": str(exc)})
        raise SystemExit(2) from None
    if world().is_main:
        write_result(request["result_file"], {"metrics": metrics})


def write_result(result_file: str | None, payload: dict) -> None:
    """Rank 0's answer to the launcher (atomic: the launcher never reads half a file)."""
    if not result_file:
        return
    path = Path(result_file)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, default=float))
    os.replace(tmp, path)
