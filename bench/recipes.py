"""The three pretraining recipes the benchmark compares, each timed step by step in this process.

(a) seed: the recipe LMForge started from (and `run_mlm --line_by_line`): every line of the corpus
    is one example, truncated to the block, padded per batch by DataCollatorForLanguageModeling,
    trained by `Trainer` with the dense MLM head.
(b) trainer_packed: `Trainer` on LMForge's packed blocks (no padding), still the dense head.
(c) engine: LMForge's own loop (components/pretrain/engine.py): packed blocks, masking in torch,
    the head only at masked positions.

All three build the same model (components.shared.modeling.build_mlm, same seed), use the same
tokenizer, batch size, learning rate and warm-up share, and train on the same number of REAL
(non-padding) tokens; each is then scored on the same fixed masked held-out blocks.
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

WARMUP_STEPS = 5  # steps excluded from the steady-state rate (thread pools, allocator, first kernels)


@dataclass
class Timeline:
    """(time, real tokens, padded tokens, process CPU time) at the end of every step. The CPU time
    (all of this process's threads) is the steadier measure on a shared machine: other tenants
    stretch the wall clock, much less the work done."""

    marks: list = field(default_factory=list)

    def add(self, real: int, padded: int) -> None:
        self.marks.append((time.perf_counter(), real, padded, time.process_time()))

    def steady(self) -> dict:
        skip = min(WARMUP_STEPS, max(len(self.marks) - 2, 0))
        t0, c0 = self.marks[skip][0], self.marks[skip][3]
        rest = self.marks[skip + 1 :]
        seconds, cpu = rest[-1][0] - t0, rest[-1][3] - c0
        real, padded = sum(m[1] for m in rest), sum(m[2] for m in rest)
        return {"steps": len(self.marks), "seconds": seconds, "real_tokens_per_s": real / seconds, "padding_share": 1 - real / max(padded, 1), "real_tokens_per_cpu_s": real / max(cpu, 1e-9)}


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms by a thread (MiB)."""

    def __enter__(self):
        import psutil

        self.proc, self.stop = psutil.Process(), threading.Event()
        self.base = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.mib = (self.peak - self.base) / 2**20


def fresh_model(sizes, tokenizer, seed: int, threads: int):
    from components.shared.modeling import build_mlm
    from components.shared.training import seed_everything

    seed_everything(seed, threads)
    return build_mlm(sizes, tokenizer)


def group_texts(examples: dict, block_size: int) -> dict:
    """run_mlm.py's and run_clm.py's `group_texts`: concatenate a batch of tokenized texts and cut it
    into `block_size` chunks, dropping the remainder."""
    concatenated = {k: list(itertools.chain(*examples[k])) for k in examples.keys()}
    total_length = len(concatenated[list(examples.keys())[0]])
    total_length = (total_length // block_size) * block_size
    return {k: [t[i : i + block_size] for i in range(0, total_length, block_size)] for k, t in concatenated.items()}


def seed_examples(tokenizer, texts: list[str], block_size: int) -> list[dict]:
    """Line by line: every non-empty line one example, [CLS] ... [SEP], truncated to the block."""
    lines = [line for text in texts for line in text.split("\n") if line.strip()]
    enc = tokenizer(lines, truncation=True, max_length=block_size, return_attention_mask=False)
    return [{"input_ids": ids} for ids in enc["input_ids"]]


def run_trainer(model, tokenizer, examples: list[dict], steps: int, spec: dict, collator=None) -> Timeline:
    """Hugging Face `Trainer` for `steps` steps, timed per step; `collator`: DataCollatorForLanguageModeling
    (15% masked) unless given (run_clm's is transformers' default_data_collator)."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    collator = collator or DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    timeline, sizes = Timeline(), []

    def collate(features):
        batch = collator(features)
        sizes.append((int(batch["attention_mask"].sum()), batch["input_ids"].numel()))
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            timeline.add(*sizes[len(timeline.marks)])

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=spec["batch_size"],
            max_steps=steps,
            learning_rate=spec["learning_rate"],
            warmup_steps=spec["warmup_ratio"],
            weight_decay=0.01,
            adam_beta2=0.98,
            adam_epsilon=1e-6,
            lr_scheduler_type="linear",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            dataloader_pin_memory=False,
            seed=spec["seed"],
            data_seed=spec["seed"],
        )
        Trainer(model=model, args=args, train_dataset=examples, data_collator=collate, callbacks=[Clock()]).train()
    return timeline


def run_engine(model, tokenizer, blocks, steps: int, spec: dict, **options) -> Timeline:
    """LMForge's engine loop on the packed blocks, timed per step (a loss read-back every step)."""
    from components.pretrain import engine
    from components.pretrain.pretrain import PretrainConfig
    from components.shared.distributed import World
    from components.shared.training import Progress, optimizer_and_schedule

    config = PretrainConfig.from_params(
        {
            "max_steps": steps,
            "batch_size": spec["batch_size"],
            "learning_rate": spec["learning_rate"],
            "warmup_ratio": spec["warmup_ratio"],
            "seed": spec["seed"],
            "log_every": 1,
            "checkpoint_every": 0,
            "device": "cpu",
            **options.get("config", {}),
        },
        "pretrain",
    )
    timeline = Timeline()
    tokens = spec["batch_size"] * blocks.block_size

    class Timed(Progress):
        def step(self, step, loss, lr, n, parts=None):
            super().step(step, loss, lr, n, parts)
            timeline.add(tokens, tokens)

    import torch

    opt, sched = optimizer_and_schedule(model, config.learning_rate, config.weight_decay, config.warmup_ratio, steps, fused=options.get("fused", True))
    progress = Timed("bench", steps, 10**9, quiet=True)
    from components import objectives

    blocks = objectives.get(config.objective).training_blocks(blocks, tokenizer, config)  # as pretrain() does
    engine.train(model, tokenizer, blocks, opt, sched, config, torch.device("cpu"), World(), progress, None, lambda *a: None)
    return timeline


def heldout_set(tokenizer, blocks, n: int, seed: int = 1234):
    """Fixed inputs and labels: the first `n` held-out blocks, masked once with a seeded generator."""
    import torch

    from components.objectives.masked_lm import Masker

    ids = torch.from_numpy(blocks.take(np.arange(min(n, len(blocks))))).long()
    return Masker(tokenizer, 0.15, seed)(ids)


def heldout_loss(model, inputs, labels, batch: int = 32) -> tuple[float, float]:
    """Mean masked-token cross-entropy and its standard error over the held-out positions."""
    import torch
    import torch.nn.functional as F

    model.eval()
    losses = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            x, y = inputs[i : i + batch], labels[i : i + batch]
            logits = model(input_ids=x).logits
            picked = y != -100
            losses.append(F.cross_entropy(logits[picked].float(), y[picked], reduction="none"))
    model.train()
    all_ = torch.cat(losses)
    return float(all_.mean()), float(all_.std() / len(all_) ** 0.5)
