"""Issue 10 probes that no config key expresses (bench/results/quality-2026-12-02-probes-2.md).

    python -m bench.init_probe run --init bias,sin [--set KEY=VALUE ...]   # pretrain -> finetune -> evaluate
    python -m bench.init_probe linear DIR [DIR ...]                        # frozen-encoder linear probe

`run`: the demo preset (plus `--set` overrides) on the demo data, with the masked LM's initial weights
changed: `bias` starts the output bias at the centred log unigram frequencies of the training blocks,
`sin` starts the position embeddings as sinusoids scaled to the token embeddings' RMS. ingest and
clean_tokenize come from the quality benchmark's cache; pretrain, finetune and evaluate go to a folder
of their own under --out (the cache's keys do not know the initialisation). `linear`: mean-pooled
embedding-layer and last-layer features of each encoder, frozen, into a logistic regression on the
train split, best validation accuracy over C in {0.01, 0.1, 1}; `random:DIR` is DIR's shape, untrained.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from bench.quality import DEMO, cell_overrides, dataset_spec, preset_corpus, scores, validation_scores
from bench.quality_cache import METRICS, Cache
from components.shared import artifacts, settings

INITS = ("bias", "sin")


def initialise(model, blocks, inits: set[str]) -> None:
    """Change a fresh BertForMaskedLM's initial weights in place (see the module docstring)."""
    import torch

    with torch.no_grad():
        if "bias" in inits:
            ids = blocks.take(np.arange(len(blocks))).ravel()
            logp = np.log((np.bincount(ids, minlength=model.config.vocab_size) + 1.0) / (len(ids) + model.config.vocab_size))
            model.cls.predictions.bias.copy_(torch.from_numpy(logp - logp.mean()).float())
        if "sin" in inits:
            pe = model.bert.embeddings.position_embeddings.weight
            pos = torch.arange(pe.shape[0]).unsqueeze(1).float()
            freq = torch.exp(torch.arange(0, pe.shape[1], 2).float() * (-math.log(10000.0) / pe.shape[1]))
            pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
            pe.mul_(model.config.initializer_range * math.sqrt(2))


def run(inits: set[str], sets: list[str], out: Path, threads: int) -> dict:
    from components.evaluate.evaluate import evaluate
    from components.finetune.finetune import finetune
    from components.objectives import masked_lm
    from components.pretrain.pretrain import pretrain
    from components.shared.shards import open_blocks
    from pipelines.config import load_config

    project = settings.project_dir()
    spec = dataset_spec(DEMO, project / "data", project / "local_outputs" / "quality_data")
    config = load_config("demo", cell_overrides(spec, preset_corpus("demo", project / "data"), sets, 0, threads))
    clean = Cache(project / "local_outputs" / "bench-quality").cleaned(config)  # shared with bench.quality
    build = masked_lm.build_model

    def built(sizes, tokenizer):
        model = build(sizes, tokenizer)
        initialise(model, open_blocks(clean / artifacts.BLOCKS_TRAIN), inits)
        return model

    own = Cache(out)  # keyed by nothing: the folder is the probe's own
    masked_lm.build_model = built
    try:
        encoder = own.stage("pretrain", "run", lambda d: pretrain(clean, d, config.pretrain, checkpoint_dir=out / "checkpoint"))
    finally:
        masked_lm.build_model = build
    tuned = own.stage("finetune", "run", lambda d: finetune(clean, encoder, d, config.finetune))
    scored = own.stage("evaluate", "run", lambda d: evaluate(clean, encoder, tuned, d, config.evaluate, model_name=None))
    pre = json.loads((encoder / METRICS).read_text())
    return {**{k: pre[k] for k in ("pretrain/final_loss", "pretrain/heldout_loss")}, **validation_scores(tuned), **scores(scored)}


def linear_probe(encoders: list[str], threads: int) -> dict:
    import pandas as pd
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.set_num_threads(threads)
    labeled = pd.read_csv(settings.project_dir() / "data" / "labeled" / "rt_sentences.csv")
    train, val = (labeled[labeled.split == s] for s in ("train", "validation"))
    results = {}
    for name in encoders:
        path = name.removeprefix("random:")
        tokenizer = AutoTokenizer.from_pretrained(path)
        torch.manual_seed(42)
        model = (BertModel(BertConfig.from_pretrained(path)) if name.startswith("random:") else BertModel.from_pretrained(path)).eval()
        xs = [features(model, tokenizer, frame.text.tolist()) for frame in (train, val)]
        results[name] = {layer: round(best_probe(xs[0][i], train.label, xs[1][i], val.label), 4) for i, layer in enumerate(("embeddings", "last layer"))}
        print(name, results[name], flush=True)
    return results


def features(model, tokenizer, texts: list[str]) -> tuple:
    import torch

    parts = [], []
    with torch.no_grad():
        for start in range(0, len(texts), 256):
            enc = tokenizer(texts[start : start + 256], padding=True, truncation=True, max_length=96, return_tensors="pt")
            states = model(**enc, output_hidden_states=True).hidden_states
            real = enc["attention_mask"].unsqueeze(-1).float()
            for part, h in zip(parts, (states[0], states[-1]), strict=True):
                part.append(((h * real).sum(1) / real.sum(1)).numpy())
    return tuple(np.concatenate(p) for p in parts)


def best_probe(x_train, y_train, x_val, y_val) -> float:
    """Validation accuracy of the best logistic regression (C in 0.01, 0.1, 1) on standardised features."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    return max(LogisticRegression(C=c, max_iter=2000).fit((x_train - mean) / std, y_train).score((x_val - mean) / std, y_val) for c in (0.01, 0.1, 1.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.init_probe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="pretrain with changed initial weights, then finetune and evaluate")
    one.add_argument("--init", default="", help=f"comma-separated, of {', '.join(INITS)} (none: the preset's own init)")
    one.add_argument("--set", dest="sets", action="append", default=[], help="a config override, as for lmforge run")
    one.add_argument("--out", type=Path, help="default local_outputs/init-probe/<init>-<overrides>")
    lin = sub.add_parser("linear", help="frozen-encoder linear probe on the demo labeled set")
    lin.add_argument("encoders", nargs="+", help="pretrained dirs; random:DIR for DIR's shape untrained")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    settings.quiet_environment()
    if args.command == "linear":
        linear_probe(args.encoders, args.threads)
        return 0
    inits = {part for part in args.init.split(",") if part}
    if inits - set(INITS):
        print(f"error: unknown --init {', '.join(sorted(inits - set(INITS)))}: use {', '.join(INITS)}", file=sys.stderr)
        return 1
    name = "-".join([*sorted(inits), *args.sets]).replace("/", "_") or "preset"
    print(json.dumps(run(inits, args.sets, args.out or settings.project_dir() / "local_outputs" / "init-probe" / name, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
