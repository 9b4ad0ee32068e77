"""pretrain: language modelling on the packed corpus blocks, from scratch or continued.

What is predicted is the objective's (`pretrain.objective`, components/objectives: masked LM by
default, causal LM); the loop itself lives in `engine.py`. This module checks the request, builds
or loads the objective's model, resumes from a checkpoint, runs the loop on one process or
re-launches itself under torchrun, scores the held-out blocks, and writes the outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from components import objectives
from components.shared import artifacts, distributed
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.modeling import ModelSizes
from components.shared.training import Progress, optimizer_and_schedule, require_dir, save_history, seed_everything


class PretrainConfig(StageConfig):
    objective: objectives.ObjectiveName = Field("masked_lm", description=f"what the model learns to predict: {', '.join(objectives.NAMES)} (components/objectives)")
    model: ModelSizes = Field(default_factory=ModelSizes, description="encoder sizes (ignored with init_from: the checkpoint's own)")
    init_from: str | None = Field(None, description="continue from this Hugging Face checkpoint (local dir or hub id); None = random init")
    embedding_init: Literal["random", "ppmi"] = Field(
        "random",
        description="a fresh model's token embeddings: random (BERT's init), or ppmi: count-based vectors of the training blocks (positive PMI of windowed co-occurrence, truncated SVD; seconds; components/pretrain/embedding_init.py); ignored with init_from",
    )
    embedding_init_scale: float = Field(
        6.0,
        gt=0,
        description="embedding_init ppmi: the vectors' RMS in units of the model's initializer_range (6 beat 2.5 on the demo set's validation split; bench/results/quality-2026-12-03-ppmi.md)",
    )
    max_steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="blocks per optimizer step, over all processes and accumulation steps")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step (same result, less memory)")
    learning_rate: float = Field(5e-4, gt=0, description="peak learning rate (small models take higher rates)")
    schedule: Literal["linear", "cosine"] = Field("linear", description="decay to zero after the warm-up")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay, not applied to biases and norms")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    dropout: float | None = Field(
        0.0, ge=0, lt=1, description="dropout while pretraining (0: Cramming's choice, and SDPA's fused CPU kernel); the saved model keeps model.dropout for fine-tuning; None = model.dropout"
    )
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masked_lm: share of tokens to predict (BERT's 15%)")
    nsp: bool = Field(
        False,
        description="masked_lm: add BERT's next-sentence prediction (segment pairs from document order, half of them random; components/objectives/next_sentence.py); off: RoBERTa found it does not help",
    )
    seed: int = Field(42, description="seeds weights, batch order and masks")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when visible")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 autocast on a GPU that has it, else fp32")
    compile: bool = Field(
        False,
        description="torch.compile the step; measured, it loses: on 2 CPU cores the compile time outweighs its gain, and on an H200 (BERT-base, bf16) compiled steps ran 0.93x eager (bench/results/)",
    )
    nproc: int = Field(1, ge=1, description="data-parallel processes (torchrun; nccl on GPUs, gloo on CPUs)")
    threads: int | None = Field(None, ge=1, description="torch threads per process; None = all cores this process may use")
    log_every: int = Field(20, ge=1, description="progress line (and one loss read-back) every N steps")
    checkpoint_every: int = Field(100, ge=0, description="checkpoint every N steps for automatic resume; 0 = never")
    checkpoint_dir: str | None = Field(None, description="where checkpoints go; None = local_outputs/checkpoints/<config+data hash>")

    @model_validator(mode="after")
    def _nsp_is_masked_lm(self):
        if self.nsp and self.objective != "masked_lm":
            raise ValueError(f"nsp is a second loss of the masked_lm objective, not of {self.objective}: set nsp false or objective masked_lm")
        return self

    @model_validator(mode="after")
    def _batch_splits(self):
        if self.batch_size % (self.grad_accum * self.nproc):
            raise ValueError(f"batch_size {self.batch_size} does not split into grad_accum {self.grad_accum} x nproc {self.nproc} equal micro-batches: change one of them")
        return self


def pretrain(cleaned_dir: Path, out_dir: Path, config: PretrainConfig, checkpoint_dir: Path | None = None) -> dict:
    """Train the objective's model (masked LM: a BertForMaskedLM) on BLOCKS_TRAIN; write the model + tokenizer, history and loss curve.

    Checkpoints go to `checkpoint_dir` (default: config.checkpoint_dir, else a folder keyed by the
    config and data under the project); a run finding one there resumes from it, and removes the
    folder once training completes.
    """
    from components.pretrain import checkpoint
    from components.shared import settings

    cleaned_dir = require_dir(cleaned_dir, "cleaned data", "clean_tokenize")
    if checkpoint_dir is None:
        checkpoint_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else checkpoint.default_dir(settings.project_dir(), config.model_dump(), cleaned_dir)
    with _checkpoint_owner(Path(checkpoint_dir)):
        if config.nproc > 1 and not distributed.under_torchrun():
            request = {"cleaned_dir": str(cleaned_dir), "out_dir": str(out_dir), "config": config.model_dump(), "checkpoint_dir": str(checkpoint_dir)}
            return distributed.launch("components.pretrain.worker", request, config.nproc)
        return run(cleaned_dir, Path(out_dir), config, Path(checkpoint_dir))


def _checkpoint_owner(checkpoint_dir: Path):
    """One live run per checkpoint folder: two runs of the same config and data share the default
    folder, and the second must not resume from the first's checkpoint while the first is still
    writing it. This process holds the lock (the torchrun parent, or rank 0 under an outer
    torchrun); a dead owner's lock is taken over, so a killed run still resumes."""
    import contextlib

    from components.shared import locks, settings

    rank = settings.torchrun_rank()
    if rank is not None and rank[0] != 0:
        return contextlib.nullcontext()
    fix = "wait for it to finish, or give this run its own folder with --set pretrain.checkpoint_dir=PATH"
    return locks.owned(checkpoint_dir / ".owner.lock", f"checkpoint folder {checkpoint_dir}", fix)


def run(cleaned_dir: Path, out_dir: Path, config: PretrainConfig, checkpoint_dir: Path) -> dict:
    """The training on this process (one of the ranks when under torchrun)."""

    from components.pretrain import checkpoint, engine
    from components.shared.shards import open_blocks

    seed_everything(config.seed, config.threads)
    device = distributed.resolve_device(config.device, distributed.world())
    world = distributed.init(device.type)
    objective = objectives.for_pretrain(config)
    try:
        _check_packing(cleaned_dir, config)
        tokenizer, model = _tokenizer_and_model(cleaned_dir, config, objective)
        packed = open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN)
        init = _embedding_init(model, tokenizer, packed, config, quiet=not world.is_main)
        blocks = objective.training_blocks(packed, tokenizer, config)
        if len(blocks) < config.batch_size:
            raise UserError(f"only {len(blocks)} training blocks for batch_size {config.batch_size}: lower pretrain.batch_size or add text")
        model.to(device)
        opt, sched = optimizer_and_schedule(model, config.learning_rate, config.weight_decay, config.warmup_ratio, config.max_steps, schedule=config.schedule, fused=True)
        latest = checkpoint.latest(checkpoint_dir)
        resume = checkpoint.load(latest, "cpu") if latest else None  # RNG states stay CPU tensors; load_state_dict moves weights
        progress = Progress("pretrain", config.max_steps, config.log_every, quiet=not world.is_main)
        save = lambda step, state: checkpoint.save(checkpoint_dir, step, state)  # noqa: E731
        stats = engine.train(model, tokenizer, blocks, opt, sched, config, device, world, progress, resume, save, objective)
        metrics = {**_metrics(progress, stats, model, config, blocks, device, world, objective), **init}
        if world.is_main:
            metrics.update(_heldout(model, tokenizer, cleaned_dir, config, objective, device))
            with artifacts.staged_dir(out_dir) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                save_history(tmp, progress.history, objective.DESCRIPTION)
            checkpoint.remove(checkpoint_dir)  # done: a later run with the same config starts afresh
        return metrics
    finally:
        distributed.shutdown()


def _check_packing(cleaned_dir: Path, config: PretrainConfig) -> None:
    """The blocks were packed as this objective needs (clean_report's `packing`; older reports lack
    it): for it, or for one with the same PACKING (replaced_token trains on masked LM's blocks)."""
    packed = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT).get("packing") if (cleaned_dir / artifacts.CLEAN_REPORT).is_file() else None
    framing = {k: v for k, v in (packed or {}).items() if k != "objective"}
    if packed and packed.get("objective") != config.objective and framing != objectives.get(config.objective).PACKING:
        raise UserError(
            f"the blocks in {cleaned_dir} were packed for {packed.get('objective')} but pretrain.objective is {config.objective}: "
            f"rerun clean_tokenize with clean_tokenize.objective {config.objective} (lmforge run sets it from pretrain.objective)"
        )


def _tokenizer_and_model(cleaned_dir: Path, config: PretrainConfig, objective):
    """The corpus tokenizer and the objective's fresh model, or (init_from) the checkpoint's model,
    which must be the tokenizer clean_tokenize used (clean_tokenize.tokenizer_from)."""
    from transformers import AutoTokenizer

    from components.shared.modeling import load_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    if not config.init_from:
        return tokenizer, objective.build_model(config.model, tokenizer)
    model = objective.load_model(config.init_from)
    if load_tokenizer(config.init_from).get_vocab() != tokenizer.get_vocab():  # ids would index the wrong embeddings
        raise UserError(
            f"pretrain.init_from {config.init_from!r} has its own {model.config.vocab_size}-token vocabulary but the corpus was tokenized with another "
            f"({len(tokenizer)} tokens): set clean_tokenize.tokenizer_from to the same checkpoint (lmforge run does this when pretrain.init_from is set)"
        )
    return tokenizer, model


def _embedding_init(model, tokenizer, packed, config: PretrainConfig, quiet: bool) -> dict:
    """pretrain.embedding_init on a fresh model, from the packed training blocks (every rank computes
    the same vectors; a resumed run's checkpoint then overwrites them)."""
    if config.embedding_init == "random" or config.init_from:
        return {}
    from components.pretrain import embedding_init

    if not quiet:
        print(f"[pretrain] embedding_init {config.embedding_init}: PPMI-SVD vectors of the training blocks", flush=True)
    return embedding_init.initialise(model, packed, tokenizer.all_special_ids, scale=config.embedding_init_scale)


def _metrics(progress, stats: dict, model, config: PretrainConfig, blocks, device, world, objective) -> dict:
    import torch

    from components.shared import flops

    tail = [h["loss"] for h in progress.history[-max(1, config.max_steps // 10) :]]
    seconds = max(stats["seconds"], 1e-9)
    metrics = {
        "pretrain/final_loss": float(np.mean(tail)),
        "pretrain/first_loss": progress.history[0]["loss"],
        "pretrain/tokens_per_s": stats["tokens"] / seconds,  # all tokens are real: packed, no padding
        "pretrain/params": sum(p.numel() for p in model.parameters()),
        "pretrain/n_blocks": len(blocks),
        "pretrain/threads": torch.get_num_threads(),  # results are bit-identical only for the same count
        "pretrain/processes": world.size,
    }
    if stats["steps"]:
        achieved = objective.train_flops(stats["tokens"], stats["targets"], blocks.block_size, model.config) / seconds
        if device.type == "cuda":
            peak = (flops.datasheet_peak(torch.cuda.get_device_name(device)) or flops.matmul_peak(str(device), torch.bfloat16)) * world.size
        else:
            peak = flops.matmul_peak("cpu") * world.size  # every process has its own threads
        metrics["pretrain/model_tflops"] = achieved / 1e12
        metrics["pretrain/mfu"] = achieved / peak
    return metrics


HELDOUT_BLOCKS = 256  # enough for a stable score on the demo, seconds on a CPU at any preset size


def _heldout(model, tokenizer, cleaned_dir: Path, config: PretrainConfig, objective, device) -> dict:
    """The objective's mean loss per target on the first held-out blocks, and its exp (perplexity);
    masked LM draws its held-out masks from `config.seed`, so the score is reproducible."""
    import torch

    from components.shared.shards import open_blocks

    path = cleaned_dir / artifacts.BLOCKS_HELDOUT
    if not (path / "index.json").is_file():
        return {}
    held = open_blocks(path)
    if not len(held):
        return {}
    ids = torch.from_numpy(held.take(np.arange(min(len(held), HELDOUT_BLOCKS)))).long().to(device)
    loss = objective.heldout_loss(model, tokenizer, ids, config.seed)
    model.train()
    return {"pretrain/heldout_loss": loss, "pretrain/heldout_perplexity": float(np.exp(min(loss, 50.0)))}
