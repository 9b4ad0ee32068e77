"""The pretraining loop: packed blocks, an objective's batches and loss, accumulation, DDP.

The loop knows no objective: it draws block indices, asks the objective (components/objectives,
`pretrain.objective`) to turn them into inputs and targets and for the module that sums the loss,
and does the rest. One global batch of `batch_size` blocks per optimizer step, whatever the number
of processes and micro-batches: every rank draws the same block indices and the same targets (two
seeded generators of their own: the block order and the objective's) and takes its slice, and each
micro-batch's summed loss is divided by the target count of the whole global batch. So 1 process,
2 processes and 4 accumulation steps compute the same gradient, up to the order of float additions.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from components.shared.errors import UserError


class BlockOrder:
    """Shuffled block indices, epoch after epoch, from a generator of its own; resumable."""

    def __init__(self, n: int, seed: int):
        import torch

        self.n, self.g = n, torch.Generator().manual_seed(seed)
        self.order, self.pos = torch.randperm(n, generator=self.g), 0

    def next(self, batch_size: int) -> np.ndarray:
        import torch

        if self.pos + batch_size > self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.g), 0
        idx = self.order[self.pos : self.pos + batch_size]
        self.pos += batch_size
        return idx.numpy()

    def state_dict(self) -> dict:
        return {"g": self.g.get_state(), "order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["g"])
        self.order, self.pos = state["order"], state["pos"]


def train(model, tokenizer, blocks, opt, sched, config, device, world, progress, resume: dict | None, save_checkpoint, objective=None) -> dict:
    """Run steps until config.max_steps; `save_checkpoint(step, state)` is called on rank 0 every
    config.checkpoint_every steps. `objective`: the module of config.objective unless given.
    Returns {'tokens', 'seconds', 'targets', 'steps'} of this process's run."""
    import torch

    from components import objectives
    from components.pretrain import checkpoint

    objective = objective or objectives.for_pretrain(config)
    B, A, W = config.batch_size, config.grad_accum, world.size
    if B % (A * W):  # an outer torchrun (a multi-node job) may start more processes than pretrain.nproc
        raise UserError(f"pretrain.batch_size {B} does not split into grad_accum {A} x {W} processes: make batch_size a multiple of {A * W}")
    micro = B // (A * W)
    order, batches = BlockOrder(len(blocks), config.seed), objective.Batches(tokenizer, config)
    module = objective.step_module(model).to(device)
    parts = module if hasattr(module, "take_parts") else None  # the loss's named parts, logged beside it (before DDP wraps it)
    if config.dropout is not None:  # the modules' rate only: the saved config keeps model.dropout for fine-tuning
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = config.dropout
    start = 0
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        order.load_state_dict(resume["order"])
        batches.load_state_dict(resume["masker"])  # the objective's generator, under the key it always had
        checkpoint.set_rng_states(resume["rng"])
        progress.history = resume["history"]
        start = resume["step"]
        if world.is_main:
            print(f"[pretrain] resuming from the checkpoint of step {start}", flush=True)
    if W > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        module = DDP(module, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = torch.compile(module) if config.compile else module
    fixed = objective.fixed_shapes(blocks.block_size, micro, config) if config.compile else None
    autocast = _autocast(device, config.precision)
    mine = slice(world.rank * (B // W), (world.rank + 1) * (B // W))
    pending: list = []  # (step, summed loss tensor, target count, lr): read back in one sync
    targets_total, t0 = 0, time.perf_counter()

    model.train()
    for step in range(start + 1, config.max_steps + 1):
        ids = torch.from_numpy(blocks.take(order.next(B))).long()
        inputs, labels, n_targets = batches(ids)
        inputs, labels = _rows(inputs, mine), _rows(labels, mine)
        loss_sum = torch.zeros((), device=device)
        for a in range(A):
            sync = contextlib.nullcontext() if (W == 1 or a == A - 1) else module.no_sync()
            rows = slice(a * micro, (a + 1) * micro)
            batch = objective.micro_batch(_rows(inputs, rows), _rows(labels, rows), fixed)
            if device.type == "cuda":  # pinned: the copy runs behind the host, which goes on to the next step
                batch = [t.pin_memory().to(device, non_blocking=True) for t in batch]
            with sync, autocast:
                part = step_fn(*batch)
            # DDP averages gradients over ranks; * W turns that into the sum over the global batch.
            (part * (W / n_targets)).backward()
            loss_sum += part.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        targets_total += n_targets
        pending.append((step, loss_sum, n_targets, sched.get_last_lr()[0], parts.take_parts() if parts else None))
        checkpoint_now = config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps
        if step % config.log_every == 0 or step == config.max_steps or checkpoint_now:
            _flush(pending, progress, B * blocks.block_size, device, parts.part_names if parts else ())
        if checkpoint_now and world.is_main:
            state = {
                "step": step,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "order": order.state_dict(),
                "masker": batches.state_dict(),
                "rng": checkpoint.rng_states(),
                "history": progress.history,
            }
            save_checkpoint(step, state)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"tokens": (config.max_steps - start) * B * blocks.block_size, "seconds": time.perf_counter() - t0, "targets": targets_total, "steps": config.max_steps - start}


def _rows(batch, rows: slice):
    """Rows of a batch tensor, or of each tensor of a tuple (an objective's inputs may be several)."""
    return batch[rows] if not isinstance(batch, tuple) else tuple(t[rows] for t in batch)


def _flush(pending: list, progress, tokens_per_step: int, device, part_names: tuple = ()) -> None:
    """Losses (and the loss's parts, if the objective names them) of the last steps to the host in
    one transfer (and one all-reduce under DDP)."""
    import torch
    import torch.distributed as dist

    sums = torch.stack([torch.cat([p[1].reshape(1), *([p[4].reshape(-1)] if part_names else [])]) for p in pending]).double()
    if dist.is_initialized():
        dist.all_reduce(sums)
    for (step, _, n_targets, lr, _), (s, *rest) in zip(pending, sums.tolist()):
        loss = s / n_targets
        if not math.isfinite(loss):
            raise UserError(f"pretraining diverged at step {step} (loss {loss}): lower pretrain.learning_rate or raise warmup_ratio")
        progress.step(step, loss, lr, tokens_per_step, {name: x / n_targets for name, x in zip(part_names, rest)})
    pending.clear()


def _autocast(device, precision: str):
    import torch

    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
