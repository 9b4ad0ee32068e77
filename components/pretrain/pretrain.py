"""pretrain: masked-language modelling on the packed corpus blocks, from randomly initialised weights.

Masking is dynamic (drawn anew for every batch, as RoBERTa does), so repeated epochs over a small
corpus still see fresh prediction targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from components.shared import artifacts
from components.shared.config import StageConfig
from components.shared.errors import UserError
from components.shared.shards import open_blocks
from components.shared.modeling import ModelSizes
from components.shared.training import Progress, optimizer_and_schedule, require_dir, save_history, seed_everything


class PretrainConfig(StageConfig):
    model: ModelSizes = Field(default_factory=ModelSizes, description="encoder sizes")
    max_steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="blocks per step")
    learning_rate: float = Field(5e-4, gt=0, description="peak learning rate (small models take higher rates)")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay, not applied to biases and norms")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="share of tokens to predict (BERT's 15%)")
    seed: int = Field(42, description="seeds weights, batch order and masks")
    threads: int | None = Field(None, ge=1, description="torch threads; None = all cores this process may use")
    log_every: int = Field(20, ge=1, description="progress line every N steps")


def pretrain(cleaned_dir: Path, out_dir: Path, config: PretrainConfig) -> dict:
    """Train a BertForMaskedLM on BLOCKS_TRAIN; write the model + tokenizer, history and loss curve."""
    import torch
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from components.shared.modeling import build_mlm

    cleaned_dir = require_dir(cleaned_dir, "cleaned data", "clean_tokenize")
    seed_everything(config.seed, config.threads)
    tokenizer = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    train = open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN)
    blocks = torch.from_numpy(train.take(np.arange(len(train))).astype(np.int64))
    model = build_mlm(config.model, tokenizer)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability)
    opt, sched = optimizer_and_schedule(model, config.learning_rate, config.weight_decay, config.warmup_ratio, config.max_steps)
    progress = Progress("pretrain", config.max_steps, config.log_every)

    model.train()
    for step, idx in enumerate(_batches(len(blocks), config.batch_size, config.max_steps, config.seed), start=1):
        inputs, labels = collator.torch_mask_tokens(blocks[idx].clone())
        while not (labels != -100).any():  # tiny batches can draw no mask at all: draw again
            inputs, labels = collator.torch_mask_tokens(blocks[idx].clone())
        loss = masked_lm_loss(model, inputs, labels)
        if not torch.isfinite(loss):
            raise UserError(f"pretraining diverged at step {step} (loss {loss.item()}): lower pretrain.learning_rate or raise warmup_ratio")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        progress.step(step, loss.item(), sched.get_last_lr()[0], inputs.numel())

    with artifacts.staged_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_history(tmp, progress.history, "masked-LM pretraining")
    tail = [h["loss"] for h in progress.history[-max(1, config.max_steps // 10) :]]
    return {
        "pretrain/final_loss": float(np.mean(tail)),
        "pretrain/first_loss": progress.history[0]["loss"],
        "pretrain/tokens_per_s": progress.tokens / progress.seconds,
        "pretrain/params": sum(p.numel() for p in model.parameters()),
        "pretrain/n_blocks": len(blocks),
        "pretrain/threads": torch.get_num_threads(),  # results are bit-identical only for the same count
    }


def masked_lm_loss(model, inputs, labels):
    """BertForMaskedLM's loss, with the vocabulary projection run only at the masked positions.

    The head is the costliest matmul of a small encoder (hidden x vocab at every position); only
    ~15% of positions have a label, so gathering them first (as Cramming does) cuts its cost ~6x
    and gives the same mean cross-entropy over masked tokens.
    """
    import torch.nn.functional as F

    hidden = model.bert(input_ids=inputs).last_hidden_state
    picked = labels != -100
    return F.cross_entropy(model.cls(hidden[picked]), labels[picked])


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """Shuffled block indices, epoch after epoch, from a generator of its own (order is seeded)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        yield order[pos : pos + min(batch_size, n)]
        pos += batch_size
