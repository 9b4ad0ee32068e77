"""The masked-LM training loop: packed blocks, masking in torch, sparse head, accumulation, DDP.

One global batch of `batch_size` blocks per optimizer step, whatever the number of processes and
micro-batches: every rank draws the same block indices and the same masks (two seeded generators
of their own) and takes its slice, and each micro-batch's summed loss is divided by the masked
token count of the whole global batch. So 1 process, 2 processes and 4 accumulation steps
compute the same gradient, up to the order in which floats are added.
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


class Masker:
    """BERT's dynamic masking, vectorised: of the non-special tokens, `p` are predicted; of those
    80% become [MASK], 10% a random token, 10% stay. Drawn from a seeded generator of its own."""

    def __init__(self, tokenizer, p: float, seed: int):
        import torch

        self.p, self.g = p, torch.Generator().manual_seed(seed)
        self.mask_id, self.vocab = tokenizer.mask_token_id, len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def __call__(self, ids):
        import torch

        while True:
            u = torch.rand(ids.shape, generator=self.g)
            picked = (u < self.p) & ~torch.isin(ids, self.special)
            if picked.any():  # tiny batches can draw no mask at all: draw again
                break
        kind = torch.rand(ids.shape, generator=self.g)
        noise = torch.randint(self.vocab, ids.shape, generator=self.g)
        inputs = torch.where(picked & (kind < 0.8), self.mask_id, ids)
        inputs = torch.where(picked & (kind >= 0.8) & (kind < 0.9), noise, inputs)
        return inputs, torch.where(picked, ids, -100)

    def state_dict(self) -> dict:
        return {"g": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["g"])


def sparse_mlm_module(model):
    """A module whose forward returns the summed cross-entropy over the masked positions only.

    The vocabulary projection is the costliest matmul of a small encoder (hidden x vocab at every
    position); only ~15% of positions have a label, so gathering them first (as Cramming does)
    cuts its cost ~6x for the same loss. The last encoder layer is cut the same way: its keys and
    values need every position, but its queries, attention output, LayerNorms and feed-forward
    feed only the masked positions' logits, so they are computed there alone (the other rows of
    the last layer never reach the loss: same loss, same gradients, ~15% less work on a CPU at
    the small size). The row layout comes in from the host (`masked_layout`), where the labels
    are drawn: finding it on the GPU would stall the host on every step until the forward had
    finished. A module (not a function) so that DDP can wrap it.
    """
    import torch
    import torch.nn.functional as F

    class SparseMLM(torch.nn.Module):
        def __init__(self, mlm):
            super().__init__()
            self.mlm = mlm

        def forward(self, inputs, query_rows, slots, targets):
            bert = self.mlm.bert
            *body, last = bert.encoder.layer
            hidden = bert.embeddings(input_ids=inputs)
            for layer in body:
                hidden = layer(hidden)
            hidden = _last_layer_at(last, hidden, query_rows, slots)
            logits = self.mlm.cls(hidden)
            return F.cross_entropy(logits.float(), targets, reduction="sum")

    return SparseMLM(model)


def _last_layer_at(layer, hidden, query_rows, slots):
    """A BertLayer's output at `query_rows` (flat [batch * seq] indices, `per` rows per block, each
    block's rows among its own) and then at `slots` of those: keys and values from every position."""
    import torch.nn.functional as F

    B, L, _ = hidden.shape
    per = len(query_rows) // B
    att = layer.attention.self
    d = att.attention_head_size
    x = hidden.flatten(0, 1).index_select(0, query_rows)  # [B * per, hidden]
    q = att.query(x).view(B, per, -1, d).transpose(1, 2)
    k = att.key(hidden).view(B, L, -1, d).transpose(1, 2)
    v = att.value(hidden).view(B, L, -1, d).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=att.dropout.p if att.training else 0.0, scale=att.scaling)
    a = a.transpose(1, 2).reshape(B * per, -1).index_select(0, slots)
    h = layer.attention.output(a, x.index_select(0, slots))
    return layer.output(layer.intermediate(h), h)


def masked_layout(labels, rows_per_block: int = 0, rows: int = 0):
    """(query_rows, slots, targets) of a [batch, seq] label tensor, for SparseMLM.

    query_rows: flat [batch * seq] indices, the same number per block: each block's masked
    positions first (ascending), then its other positions up to the batch's largest count (or
    `rows_per_block`, if more). slots: which of those rows are masked. targets: their labels.
    `rows` pads slots and targets to at least that many (slot 0, label -100: no loss, no
    gradient). The two paddings give a compiled step the same shapes every step.
    """
    import torch

    B, L = labels.shape
    picked = labels != -100
    counts = picked.sum(1)
    per = min(max(int(counts.max()), rows_per_block, 1), L)
    order = torch.argsort((~picked).to(torch.uint8), dim=1, stable=True)[:, :per]
    query_rows = (order + torch.arange(B, device=labels.device).unsqueeze(1) * L).flatten()
    slots = (torch.arange(per, device=labels.device) < counts.unsqueeze(1)).flatten().nonzero().squeeze(1)
    targets = labels.flatten().index_select(0, query_rows.index_select(0, slots))
    short = rows - len(slots)
    if short > 0:
        slots, targets = torch.cat([slots, slots.new_zeros(short)]), torch.cat([targets, targets.new_full((short,), -100)])
    return query_rows, slots, targets


def masked_cap(tokens: int, p: float, multiple: int) -> int:
    """Room for the masked positions among `tokens` masked with probability `p`: the mean plus six
    standard deviations (exceeded about once in 10^9 draws), rounded up to `multiple`."""
    return int(math.ceil((tokens * p + 6 * math.sqrt(tokens * p * (1 - p))) / multiple) * multiple)


def masked_lm_loss(model, inputs, labels):
    """Mean cross-entropy over the masked positions, computed with the sparse head."""
    layout = masked_layout(labels)
    return sparse_mlm_module(model)(inputs, *layout) / len(layout[2])


def train(model, tokenizer, blocks, opt, sched, config, device, world, progress, resume: dict | None, save_checkpoint) -> dict:
    """Run steps until config.max_steps; `save_checkpoint(step, state)` is called on rank 0 every
    config.checkpoint_every steps. Returns {'tokens', 'seconds', 'masked'} of this process's run."""
    import torch

    from components.pretrain import checkpoint

    B, A, W = config.batch_size, config.grad_accum, world.size
    if B % (A * W):  # an outer torchrun (a multi-node job) may start more processes than pretrain.nproc
        raise UserError(f"pretrain.batch_size {B} does not split into grad_accum {A} x {W} processes: make batch_size a multiple of {A * W}")
    micro = B // (A * W)
    order, masker = BlockOrder(len(blocks), config.seed), Masker(tokenizer, config.mlm_probability, config.seed + 1)
    module = sparse_mlm_module(model).to(device)
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
        masker.load_state_dict(resume["masker"])
        checkpoint.set_rng_states(resume["rng"])
        progress.history = resume["history"]
        start = resume["step"]
        if world.is_main:
            print(f"[pretrain] resuming from the checkpoint of step {start}", flush=True)
    if W > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        module = DDP(module, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = torch.compile(module) if config.compile else module
    # A compiled step gets fixed shapes (one compile, no recompiles for the varying masked counts).
    L, p = blocks.block_size, config.mlm_probability
    fixed = (min(masked_cap(L, p, 8), L), masked_cap(micro * L, p, 64)) if config.compile else (0, 0)
    autocast = _autocast(device, config.precision)
    mine = slice(world.rank * (B // W), (world.rank + 1) * (B // W))
    pending: list = []  # (step, summed loss tensor, masked count, lr): read back in one sync
    masked_total, t0 = 0, time.perf_counter()

    model.train()
    for step in range(start + 1, config.max_steps + 1):
        ids = torch.from_numpy(blocks.take(order.next(B))).long()
        inputs, labels = masker(ids)
        n_masked = int((labels != -100).sum())
        inputs, labels = inputs[mine], labels[mine]
        loss_sum = torch.zeros((), device=device)
        for a in range(A):
            sync = contextlib.nullcontext() if (W == 1 or a == A - 1) else module.no_sync()
            rows = slice(a * micro, (a + 1) * micro)
            batch = (inputs[rows], *masked_layout(labels[rows], *fixed))
            if device.type == "cuda":  # pinned: the copy runs behind the host, which goes on to the next step
                batch = [t.pin_memory().to(device, non_blocking=True) for t in batch]
            with sync, autocast:
                part = step_fn(*batch)
            # DDP averages gradients over ranks; * W turns that into the sum over the global batch.
            (part * (W / n_masked)).backward()
            loss_sum += part.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        masked_total += n_masked
        pending.append((step, loss_sum, n_masked, sched.get_last_lr()[0]))
        checkpoint_now = config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps
        if step % config.log_every == 0 or step == config.max_steps or checkpoint_now:
            _flush(pending, progress, B * blocks.block_size, device)
        if checkpoint_now and world.is_main:
            state = {
                "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "order": order.state_dict(), "masker": masker.state_dict(), "rng": checkpoint.rng_states(), "history": progress.history,
            }
            save_checkpoint(step, state)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"tokens": (config.max_steps - start) * B * blocks.block_size, "seconds": time.perf_counter() - t0, "masked": masked_total, "steps": config.max_steps - start}


def _flush(pending: list, progress, tokens_per_step: int, device) -> None:
    """Losses of the last steps to the host in one transfer (and one all-reduce under DDP)."""
    import torch
    import torch.distributed as dist

    sums = torch.stack([p[1] for p in pending]).double()
    if dist.is_initialized():
        dist.all_reduce(sums)
    for (step, _, n_masked, lr), s in zip(pending, sums.tolist()):
        loss = s / n_masked
        if not math.isfinite(loss):
            raise UserError(f"pretraining diverged at step {step} (loss {loss}): lower pretrain.learning_rate or raise warmup_ratio")
        progress.step(step, loss, lr, tokens_per_step)
    pending.clear()


def _autocast(device, precision: str):
    import torch

    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
