"""`make bench` / `python -m bench [--quick]`: LMForge's pretraining against the Hugging Face recipes.

One process, the demo corpus (data/), its LMForge WordPiece tokenizer and packed blocks, the demo and
small model sizes. For each size: the seed's recipe, Trainer on packed blocks and LMForge's engine
train on the same number of real tokens; reported are steady-state real tokens/s after warm-up,
ratios, held-out masked-LM loss, peak memory and MFU against a matmul peak measured here with the
same dtype and thread count. The causal-LM rows (bench/clm.py) do the same for a GPT-2 decoder:
`Trainer` on the run_clm recipe against the engine's causal_lm objective. Tokenization rows come
from bench/tokenization.py when it is present. Writes bench/results/latest.{md,json,png}
(`--name` for another stem; `--rows` to run some of the row groups).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SIZES = {  # the presets' model sizes (pipelines/configs/demo.yaml, small.yaml)
    "demo": {"model": {"hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512, "max_position": 128}, "learning_rate": 1e-3},
    "small": {"model": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024, "max_position": 128}, "learning_rate": 6e-4},
}
STEPS = {"demo": 60, "small": 24}  # engine steps of 32 x 128 tokens; the other recipes get as many real tokens
QUICK_STEPS = {"demo": 20}
ROWS = ("tokenization", "mlm", "clm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo size only, fewer steps, no option rows (~3 min)")
    parser.add_argument("--options", action="store_true", help="also time the engine with torch.compile and with foreach AdamW (demo size)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every recipe and the matmul peak (default 1, as in the issue)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.md/.json/.png go")
    parser.add_argument("--name", default="latest", help="the results' file stem: NAME.md/.json/.png (default latest)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated row groups to run, of {', '.join(ROWS)} (default all)")
    parser.add_argument("--sizes", default=None, help="comma-separated model sizes, of demo, small (default both; demo with --quick)")
    args = parser.parse_args(argv)
    groups = args.rows.split(",")
    if not groups or set(groups) - set(ROWS):
        parser.error(f"--rows {args.rows!r}: give a comma-separated list of {', '.join(ROWS)}")
    steps_by_size = QUICK_STEPS if args.quick else STEPS
    if args.sizes:
        if set(args.sizes.split(",")) - set(steps_by_size):
            parser.error(f"--sizes {args.sizes!r}: give a comma-separated list of {', '.join(steps_by_size)}")
        steps_by_size = {s: n for s, n in steps_by_size.items() if s in args.sizes.split(",")}

    import torch

    from bench import clm
    from components.shared import flops
    from pipelines.config import load_config

    heldout_pct = load_config(clm.PRESET).clean_tokenize.heldout_pct  # prepare()'s split, for the run_clm recipe's training texts
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lmforge-bench-") as tmp:
        cleaned = prepare(Path(tmp)) if set(groups) - {"clm"} else None
        clm_cleaned = prepare(Path(tmp), clm.PRESET) if "clm" in groups else None  # blocks packed for the causal LM
        result = {"machine": machine(args.threads), "quick": args.quick, "rows": groups, "tokenization": tokenization_rows(cleaned) if "tokenization" in groups else [], "training": [], "clm": []}
        peak = flops.matmul_peak("cpu", torch.float32)
        result["matmul_peak_gflops"] = peak / 1e9
        print(f"matmul peak (fp32, {args.threads} thread(s)): {peak / 1e9:.1f} GFLOP/s", flush=True)
        for size, steps in steps_by_size.items():
            if "mlm" in groups:
                result["training"] += training_rows(cleaned, size, steps, peak, args.threads, options=args.options and size == "demo")
            if "clm" in groups:
                result["clm"] += clm.training_rows(clm_cleaned, size, steps, peak, args.threads, SIZES[size]["model"], SIZES[size]["learning_rate"], heldout_pct)
        result["matmul_peak_gflops_end"] = flops.matmul_peak("cpu", torch.float32) / 1e9  # drift = how busy the machine was
    rescale_mfu(result)
    result["seconds"] = time.perf_counter() - start
    write(result, args.out, args.name)
    print((args.out / f"{args.name}.md").read_text())
    return 0


def prepare(tmp: Path, preset: str = "demo") -> Path:
    """ingest + clean_tokenize of the demo data with `preset`'s settings (real stage code), under tmp/preset."""
    from components.clean_tokenize.clean_tokenize import clean_tokenize
    from components.ingest.ingest import IngestConfig, ingest
    from components.shared import settings
    from pipelines.config import load_config

    data = settings.project_dir() / "data"
    if not (data / "corpus" / "enwiki.jsonl").is_file():
        sys.exit(f"error: the demo data is not at {data}: run `make data` first")
    config = load_config(preset)
    raw, cleaned = tmp / preset / "raw", tmp / preset / "cleaned"
    paths = {"source": "path", "corpus_path": str(data / "corpus" / "enwiki.jsonl"), "labeled_path": str(data / "labeled" / "rt_sentences.csv")}
    ingest(raw, IngestConfig.from_params(paths, "ingest"))
    clean_tokenize(raw, cleaned, config.clean_tokenize)
    return cleaned


def tokenization_rows(cleaned: Path) -> list[dict]:
    """bench/tokenization.py's rows (raw encode_batch, datasets.map + group_texts, LMForge packing)."""
    try:
        from bench import tokenization
    except ImportError:
        return []
    return tokenization.rows(cleaned)


def training_rows(cleaned: Path, size: str, steps: int, peak: float, threads: int, options: bool) -> list[dict]:
    import pandas as pd
    from transformers import AutoTokenizer

    from bench import recipes
    from components.shared import artifacts
    from components.shared.modeling import ModelSizes
    from components.shared.shards import open_blocks

    tokenizer = AutoTokenizer.from_pretrained(cleaned / artifacts.TOKENIZER_DIR)
    blocks, heldout = open_blocks(cleaned / artifacts.BLOCKS_TRAIN), open_blocks(cleaned / artifacts.BLOCKS_HELDOUT)
    sizes = ModelSizes.model_validate(SIZES[size]["model"])
    spec = {"batch_size": 32, "learning_rate": SIZES[size]["learning_rate"], "warmup_ratio": 0.06, "seed": 42}
    block = blocks.block_size
    budget = steps * spec["batch_size"] * block  # real tokens every recipe trains on
    lines = recipes.seed_examples(tokenizer, pd.read_parquet(cleaned / artifacts.CORPUS)["text"].tolist(), block)
    line_len = sum(len(x["input_ids"]) for x in lines) / len(lines)
    packed = [{"input_ids": row} for row in blocks.take(range(len(blocks))).tolist()]
    inputs, labels = recipes.heldout_set(tokenizer, heldout, 128)

    runs = [
        ("seed recipe (lines, padding, Trainer)", lambda m: recipes.run_trainer(m, tokenizer, lines, math.ceil(budget / (spec["batch_size"] * line_len)), spec), line_len, 1.0),
        ("Trainer on packed blocks", lambda m: recipes.run_trainer(m, tokenizer, packed, steps, spec), block, 1.0),
        # The engine pretrains without dropout (pretrain.dropout=0): this row shows what that alone buys Trainer.
        ("Trainer on packed blocks, no dropout", lambda m: recipes.run_trainer(no_dropout(m), tokenizer, packed, steps, spec), block, 1.0),
        ("LMForge engine", lambda m: recipes.run_engine(m, tokenizer, blocks, steps, spec), block, 0.15),
    ]
    if options:  # the engine's switches, measured rather than assumed (see PretrainConfig.compile)
        runs.append(("LMForge engine + torch.compile", lambda m: recipes.run_engine(m, tokenizer, blocks, steps, spec, config={"compile": True}), block, 0.15))
        runs.append(("LMForge engine, foreach AdamW", lambda m: recipes.run_engine(m, tokenizer, blocks, steps, spec, fused=False), block, 0.15))
    rows = []
    for name, train, seq_len, head_share in runs:
        print(f"[bench] {size}: {name} ...", flush=True)
        model = recipes.fresh_model(sizes, tokenizer, spec["seed"], threads)
        wall = time.perf_counter()
        with recipes.PeakRSS() as mem:
            timeline = train(model)
        wall = time.perf_counter() - wall
        loss, stderr = recipes.heldout_loss(model, inputs, labels)
        steady = timeline.steady()
        real = sum(m[1] for m in timeline.marks)
        from components.shared import flops

        rate = steady["real_tokens_per_s"]
        engine = head_share < 1  # the engine's rows: sparse head and last layer
        achieved = 3 * flops.forward_flops(rate, rate * head_share, round(seq_len), sizes.hidden_size, sizes.num_layers, sizes.intermediate_size, len(tokenizer), engine)
        rows.append(
            {
                "size": size,
                "recipe": name,
                "steps": steady["steps"],
                "real_tokens": real,
                "wall_s": wall,
                "real_tokens_per_s": rate,
                "padding_share": steady["padding_share"],
                "heldout_mlm_loss": loss,
                "heldout_loss_stderr": stderr,
                "peak_rss_mib": mem.mib,
                "mfu": achieved / peak,
                "model_gflops_per_s": achieved / 1e9,
            }
        )
        print(f"[bench] {size}: {name}: {rate:,.0f} real tok/s, held-out loss {loss:.3f} +- {stderr:.3f}, {wall:.0f} s", flush=True)
    base = {r["recipe"]: r["real_tokens_per_s"] for r in rows}
    for r in rows:
        r["x_seed"] = r["real_tokens_per_s"] / base["seed recipe (lines, padding, Trainer)"]
        r["x_trainer_packed"] = r["real_tokens_per_s"] / base["Trainer on packed blocks"]
    return rows


def rescale_mfu(result: dict) -> None:
    """MFU against the better of the two peak measurements: on a shared machine the lower one only
    measured how busy the other tenants were at that moment."""
    peak = max(result["matmul_peak_gflops"], result["matmul_peak_gflops_end"])
    for row in result["training"] + result["clm"]:
        row["mfu"] = row["model_gflops_per_s"] / peak


def no_dropout(model):
    for m in model.modules():
        if type(m).__name__ == "Dropout":
            m.p = 0.0
    return model


def machine(threads: int) -> dict:
    import os

    import torch
    import transformers

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_1min_at_start": load,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write(result: dict, out: Path, name: str = "latest") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(result))
    plot(result, out / f"{name}.png")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"LMForge bench, {m['date']}: {m['cores']} cores ({m['cpu']}), {m['threads']} torch thread(s), load {m['load_1min_at_start']:.1f} at start, "
        f"torch {m['torch']}, transformers {m['transformers']}; fp32 matmul peak {result['matmul_peak_gflops']:.1f} GFLOP/s at start, "
        f"{result['matmul_peak_gflops_end']:.1f} at the end (MFU uses the higher); {result['seconds'] / 60:.1f} min{' (--quick)' if result['quick'] else ''}.",
        "",
    ]
    if result["tokenization"]:
        keys = list(result["tokenization"][0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in result["tokenization"]]
        lines.append("")
    if result["training"]:
        lines += [
            "| size | recipe | real tokens/s | x seed | x Trainer packed | padding | held-out MLM loss | real tokens | peak RSS MiB | MFU |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["training"]:
            lines.append(
                f"| {r['size']} | {r['recipe']} | {r['real_tokens_per_s']:,.0f} | {r['x_seed']:.2f} | {r['x_trainer_packed']:.2f} | {r['padding_share']:.0%} "
                f"| {r['heldout_mlm_loss']:.3f} ± {r['heldout_loss_stderr']:.3f} | {r['real_tokens']:,} | {r['peak_rss_mib']:.0f} | {r['mfu']:.1%} |"
            )
        lines += [
            "",
            "Rates are steady state (after 5 warm-up steps); loss is on 128 fixed masked held-out blocks after the same number of real training tokens (± = standard error over masked tokens).",
            "",
        ]
    if result.get("clm"):
        from bench import clm

        lines += clm.markdown(result["clm"])
    return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["training"] + result.get("clm", [])
    labels = [f"{r['size']}{' clm' if 'heldout_clm_loss' in r else ''}\n{r['recipe'].replace(' (', chr(10) + '(')}" for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows)), 4.5), dpi=100)
    a.bar(range(len(rows)), [r["real_tokens_per_s"] for r in rows], color=["C0" if "engine" in r["recipe"] else "C7" for r in rows])
    a.set(ylabel="real tokens / s (steady state)", title="training throughput")
    clm_row = ["heldout_clm_loss" in r for r in rows]
    b.bar(
        range(len(rows)),
        [r["heldout_clm_loss" if c else "heldout_mlm_loss"] for r, c in zip(rows, clm_row)],
        yerr=[r["heldout_loss_stderr"] for r in rows],
        color=["C2" if c else "C1" for c in clm_row],
    )
    b.set(ylabel="held-out loss (masked LM: orange, causal LM: green)", title="loss after equal real tokens")
    for ax in (a, b):
        ax.set_xticks(range(len(rows)), labels, fontsize=6)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
