"""The causal-LM rows of `make bench`: LMForge's engine against `Trainer` on the `run_clm` recipe.

(a) run_clm: transformers' examples/pytorch/language-modeling/run_clm.py for a text corpus, in
    memory: every training document tokenized with LMForge's tokenizer as run_clm does
    (`tokenizer(texts)`: [CLS] ... [SEP] around each), `group_texts` into block_size chunks with
    labels = input_ids, transformers' `default_data_collator`, `Trainer`; GPT2LMHeadModel computes
    the vocabulary logits at every position and the shifted loss itself.
(b) the same recipe on a model without dropout: the engine pretrains without it (pretrain.dropout=0).
(c) LMForge's engine with `pretrain.objective: causal_lm` on LMForge's blocks packed for it (the
    demo-clm preset's clean_tokenize: [SEP] ends each document, no [CLS]; the chunked next-token
    cross-entropy).

Same GPT-2 decoder (components.objectives.causal_lm.build_model, same seed), tokenizer, batch,
learning rate, warm-up share and number of real tokens (neither side pads). Both train on the
corpus's training documents only and are scored on the same fixed held-out blocks (LMForge's
held-out split), by the same function.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

PRESET = "demo-clm"  # whose clean_tokenize packs the engine's blocks (objective causal_lm: no [CLS], [SEP] after each document)
RECIPE = "Trainer, run_clm recipe (group_texts)"
NO_DROPOUT = "Trainer, run_clm recipe, no dropout"
ENGINE = "LMForge engine (causal_lm)"
HELDOUT_BLOCKS = 128


def run_clm_blocks(tokenizer, texts: list[str], block_size: int) -> list[dict]:
    """run_clm.py's dataset: tokenize, group_texts, labels = a copy of input_ids."""
    import datasets

    from bench import recipes

    datasets.disable_progress_bars()

    def group_texts(examples):
        result = recipes.group_texts(examples, block_size)
        result["labels"] = result["input_ids"].copy()
        return result

    tokenized = datasets.Dataset.from_dict({"text": texts}).map(lambda ex: tokenizer(ex["text"]), batched=True, remove_columns=["text"])
    return list(tokenized.map(group_texts, batched=True))


def training_texts(cleaned: Path, heldout_pct: int) -> list[str]:
    """The cleaned corpus without the documents clean_tokenize held out (the same hash split)."""
    import pandas as pd

    from components.clean_tokenize.clean_tokenize import heldout_rows
    from components.shared import artifacts

    held = heldout_rows(cleaned / artifacts.CORPUS, heldout_pct)
    texts = pd.read_parquet(cleaned / artifacts.CORPUS, columns=["text"])["text"]
    return texts[~held].tolist()


def heldout_loss(model, ids, batch: int = 32) -> tuple[float, float]:
    """Mean next-token cross-entropy over every position of the held-out blocks, and its standard error."""
    import torch
    import torch.nn.functional as F

    model.eval()
    losses = []
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            x = ids[i : i + batch]
            logits = model(input_ids=x).logits[:, :-1]
            losses.append(F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten(), reduction="none"))
    model.train()
    all_ = torch.cat(losses)
    return float(all_.mean()), float(all_.std() / len(all_) ** 0.5)


def fresh_decoder(sizes, tokenizer, seed: int, threads: int, dropout: bool = True):
    from components.objectives import causal_lm
    from components.shared.training import seed_everything

    seed_everything(seed, threads)
    return causal_lm.build_model(sizes if dropout else sizes.model_copy(update={"dropout": 0.0}), tokenizer)


def training_rows(cleaned: Path, size: str, steps: int, peak: float, threads: int, model_sizes: dict, learning_rate: float, heldout_pct: int) -> list[dict]:
    """The three rows at one model size, `steps` steps of 32 blocks each, scored and timed."""
    import torch
    from transformers import AutoTokenizer, default_data_collator

    from bench import recipes
    from components.objectives import causal_lm
    from components.shared import artifacts
    from components.shared.modeling import ModelSizes
    from components.shared.shards import open_blocks

    tokenizer = AutoTokenizer.from_pretrained(cleaned / artifacts.TOKENIZER_DIR)
    blocks, heldout = open_blocks(cleaned / artifacts.BLOCKS_TRAIN), open_blocks(cleaned / artifacts.BLOCKS_HELDOUT)
    sizes = ModelSizes.model_validate(model_sizes)
    spec = {"batch_size": 32, "learning_rate": learning_rate, "warmup_ratio": 0.06, "seed": 42}
    block = blocks.block_size
    grouped = run_clm_blocks(tokenizer, training_texts(cleaned, heldout_pct), block)
    held = torch.from_numpy(heldout.take(np.arange(min(HELDOUT_BLOCKS, len(heldout))))).long()

    def trainer(model):
        return recipes.run_trainer(model, tokenizer, grouped, steps, spec, collator=default_data_collator)

    def engine(model):
        return recipes.run_engine(model, tokenizer, blocks, steps, spec, config={"objective": "causal_lm"})

    # (name, dropout in the model, run, head positions per block): Trainer's GPT2LMHeadModel projects
    # every position; the engine all but the last (it has no target). The engine zeroes dropout itself.
    runs = [(RECIPE, True, trainer, block), (NO_DROPOUT, False, trainer, block), (ENGINE, True, engine, block - 1)]
    rows = []
    for name, dropout, run, head in runs:
        print(f"[bench] {size} clm: {name} ...", flush=True)
        model = fresh_decoder(sizes, tokenizer, spec["seed"], threads, dropout)
        wall = time.perf_counter()
        with recipes.PeakRSS() as mem:
            timeline = run(model)
        wall = time.perf_counter() - wall
        loss, stderr = heldout_loss(model, held)
        steady = timeline.steady()
        rate = steady["real_tokens_per_s"]
        achieved = causal_lm.train_flops(rate, rate * head / block, block, model.config)  # per second
        rows.append(
            {
                "size": size,
                "recipe": name,
                "steps": steady["steps"],
                "real_tokens": sum(m[1] for m in timeline.marks),
                "wall_s": wall,
                "real_tokens_per_s": rate,
                "real_tokens_per_cpu_s": steady["real_tokens_per_cpu_s"],
                "padding_share": steady["padding_share"],
                "heldout_clm_loss": loss,
                "heldout_loss_stderr": stderr,
                "peak_rss_mib": mem.mib,
                "mfu": achieved / peak,
                "model_gflops_per_s": achieved / 1e9,
            }
        )
        print(f"[bench] {size} clm: {name}: {rate:,.0f} real tok/s, held-out loss {loss:.3f} +- {stderr:.3f}, {wall:.0f} s", flush=True)
    for r in rows:
        r["x_trainer_run_clm"] = r["real_tokens_per_s"] / rows[0]["real_tokens_per_s"]
        r["x_trainer_run_clm_cpu"] = r["real_tokens_per_cpu_s"] / rows[0]["real_tokens_per_cpu_s"]
    return rows


def markdown(rows: list[dict]) -> list[str]:
    """The CLM table's lines, in the MLM table's format."""
    lines = [
        "| size | recipe | real tokens/s | x Trainer run_clm | real tokens/CPU s | x Trainer (CPU) | padding | held-out CLM loss | real tokens | peak RSS MiB | MFU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['recipe']} | {r['real_tokens_per_s']:,.0f} | {r['x_trainer_run_clm']:.2f} | {r['real_tokens_per_cpu_s']:,.0f} | {r['x_trainer_run_clm_cpu']:.2f} | {r['padding_share']:.0%} "
            f"| {r['heldout_clm_loss']:.3f} ± {r['heldout_loss_stderr']:.3f} | {r['real_tokens']:,} | {r['peak_rss_mib']:.0f} | {r['mfu']:.1%} |"
        )
    lines += [
        "",
        f"Causal LM: loss is the next-token cross-entropy at every position of {HELDOUT_BLOCKS} fixed held-out blocks (LMForge's held-out split) after the same number of real training tokens (± = standard error over positions). Per CPU second: the same real tokens over the CPU time of the process's threads in the steady state, steadier than the wall clock when other jobs share the machine.",
        "",
    ]
    return lines
