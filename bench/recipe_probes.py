"""Issue 10 probes of 2026-12-04 that no config key expresses (bench/results/quality-2026-12-04-probes.md).

Each reads a finished demo run's folders (`RUN` = local_outputs/<run> after `make demo`): its
cleaned data and its pretrained encoder. Choices are read on validation; test is printed for the record.

    python -m bench.recipe_probes rates RUN --seed 42 --rates 2e-4,6e-4,1e-3      # soups and ensembles of the rate search's runs
    python -m bench.recipe_probes rates RUN --seed 42 --rates 6e-4 --set finetune.max_steps=1600   # ... under preset overrides
    python -m bench.recipe_probes rates RUN --seed 42 --rates 2e-4,6e-4 --no-control --variant lp-ft   # ... freeze-embeddings, lp-ft
    python -m bench.recipe_probes rates RUN --seed 42 --rates 1e-4,3e-4 --control-only --set finetune.max_steps=1052 --against CLS   # the control alone
    python -m bench.recipe_probes distil RUN --seed 42 --rate 6e-4 --variants pretrained:kd0.5,control:kd0.5,pretrained:ls0.1
    python -m bench.recipe_probes ppmi-linear RUN --windows 2,5,10                 # PPMI-SVD variants, linear probe
    python -m bench.recipe_probes ppmi-pretrain RUN OUT --window 10 --weighting uniform --smoothing 1.0
    python -m bench.recipe_probes ppmi-pretrain RUN OUT --preset-init --finetune-dropout 0.0   # then: rates OUT
    python -m bench.recipe_probes selftrain RUN --seed 42 --rate 6e-4 --pseudo 8000,16000   # pseudo-labelled corpus sentences

`rates`: one fine-tuning run per rate (finetune's own loop, the demo preset's settings), then the
uniform weight average of the runs' best weights, a greedy soup (Wortsman et al. 2022: runs added in
order of validation accuracy while validation does not drop) and the mean of the runs' class
probabilities; `--variant` changes each run's start (start_variant); `--control-only` trains the
random-init control alone, and `--against` gives a saved classifier's paired test interval against the
control run validation chose. `distil`: a soft target in the loss (bench/distil_probe.py).
`ppmi-linear`: mean-pooled PPMI-SVD vectors of the run's training blocks (components/pretrain/embedding_init.py,
each variant of window, weighting, context smoothing and eigenvalue power) into a logistic regression on
train, best validation accuracy over C in {0.1, 1, 10}. `ppmi-pretrain`: the demo's pretrain stage (1
thread) with one variant, into OUT/pretrain-op/pretrained beside a link to RUN's cleaned data, so that
`rates OUT --no-control` fine-tunes it (`--preset-init` keeps the preset's init and varies only `--set`;
`--finetune-dropout` rewrites the saved dropout that fine-tuning, the control's included, then uses:
`rates OUT` with the control). `selftrain`: self-training on the run's corpus (bench/selftrain_probe.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from components.shared import artifacts

CLEANED, PRETRAINED, CLASSIFIER = "clean-tokenize-op/cleaned", "pretrain-op/pretrained", "finetune-op/classifier"


def setup(run: Path, overrides: list[str]):
    """The demo preset's finetune config (1 thread), the train/validation/test rows and the pad id."""
    from transformers import AutoTokenizer

    from components.finetune.finetune import labeled_splits
    from pipelines.config import load_config

    config = load_config("demo", [*overrides, "finetune.threads=1"]).finetune
    train, val = labeled_splits(run / CLEANED, config)
    labeled = pd.read_parquet(run / CLEANED / artifacts.LABELED)
    return config, train.reset_index(drop=True), val, labeled[labeled.split == "test"], AutoTokenizer.from_pretrained(run / PRETRAINED).pad_token_id


def probabilities(model, rows: pd.DataFrame, pad_id: int) -> np.ndarray:
    """Class probabilities of `rows` (the task's own batching, eval mode, no gradients)."""
    from components.tasks import classification, sequence

    return sequence.predict(model, rows, pad_id, 128, classification.collate, lambda logits: logits.float().softmax(-1).cpu().numpy())[0]


def accuracy(probs: np.ndarray, rows: pd.DataFrame) -> float:
    return float((probs.argmax(1) == rows["label"].to_numpy()).mean())


def fresh(run: Path, config, pad_id: int, train, val, name: str, random_init: bool):
    """The classifier (or the control) as finetune builds it, seeded as finetune seeds it, and the loop's setup."""
    from components.finetune import loop
    from components.finetune.finetune import build_classifier
    from components.shared.training import seed_everything

    seed_everything(config.seed, config.threads)
    model = build_classifier(run / PRETRAINED, config, random_init=random_init)
    return model, loop.prepare(model, pad_id, train, val, config, name, loop.World())


def rates(run: Path, seed: int, lrs: list[float], models=("pretrained", "control"), overrides: list[str] = (), variant: str | None = None, classifier: Path | None = None) -> dict:
    config, train, val, test, pad_id = setup(run, [f"finetune.seed={seed}", f"finetune.learning_rates={json.dumps(lrs)}", *overrides])
    result = {"seed": seed, "rates": lrs, "overrides": list(overrides), "variant": variant}
    for name in models:
        random_init = name == "control"
        model, s = fresh(run, config, pad_id, train, val, name, random_init)
        result[name] = rate_search(model, s, name, lrs, val, test, pad_id, variant)
        print(name, json.dumps({k: v for k, v in result[name].items() if k != "test predictions"}), flush=True)  # those go to --json
    if classifier is not None and "control" in result:
        result["against"] = against(classifier, result["control"], test, pad_id)
        print("against", json.dumps(result["against"]), flush=True)
    return result


def against(classifier: Path, control: dict, test, pad_id: int) -> dict:
    """The paired test interval (evaluate's bootstrap) of a classifier saved elsewhere against the control's run validation chose."""
    from transformers import AutoModelForSequenceClassification

    from components.evaluate.gate import GateConfig, compare

    chosen = max((k for k in control if k.startswith("lr ")), key=lambda k: control[k][0])
    pred = probabilities(AutoModelForSequenceClassification.from_pretrained(classifier).eval(), test, pad_id).argmax(1)
    y, other = test["label"].to_numpy(), np.array(control["test predictions"][chosen])
    return {"classifier": str(classifier), "control run": chosen, **compare(y, pred, other, int(test["label"].nunique()), GateConfig())["accuracy"]}


FINETUNE_VARIANTS = ("freeze-embeddings", "lp-ft")


def start_variant(model, s, lr: float, variant: str | None, name: str) -> None:
    """Before one rate's run: `freeze-embeddings` keeps the token embeddings as pretraining left them;
    `lp-ft` (Kumar et al. 2022) first trains the pooler and head alone, the encoder frozen, at 10x the
    rate, and the run starts from that probe's best weights. Every parameter trains again afterwards."""
    from components.finetune import loop

    for p in model.parameters():
        p.requires_grad_(True)
    if variant == "freeze-embeddings":
        model.get_input_embeddings().weight.requires_grad_(False)
    elif variant == "lp-ft":
        encoder = [p for n, p in model.named_parameters() if n.startswith(f"{model.base_model_prefix}.") and ".pooler." not in n]
        for p in encoder:
            p.requires_grad_(False)
        model.load_state_dict(loop.train_run(s, lr * 10, f"{name} linear probe lr={lr * 10:g}").state)
        for p in encoder:
            p.requires_grad_(True)


def rate_search(model, s, name: str, lrs: list[float], val, test, pad_id: int, variant: str | None = None) -> dict:
    """One run per rate, as loop.search (the same initial weights and dropout stream for each), then the soups and the ensemble."""
    from components.finetune import loop

    initial, rng = loop.cpu_state(model), loop.rng_state()
    states = []
    for lr in lrs:
        model.load_state_dict(initial)
        loop.set_rng_state(rng)
        start_variant(model, s, lr, variant, name)
        states.append(loop.train_run(s, lr, f"{name} lr={lr:g}").state)

    def score(state):
        model.load_state_dict(state)
        return probabilities(model, val, pad_id), probabilities(model, test, pad_id)

    def soup(members):
        first = states[members[0]]
        return {k: (sum(states[i][k].double() for i in members) / len(members)).to(v.dtype) if v.is_floating_point() else v for k, v in first.items()}

    runs = [score(st) for st in states]
    r = {f"lr {lr:g}": [accuracy(v, val), accuracy(t, test)] for lr, (v, t) in zip(lrs, runs)}
    r["test predictions"] = {f"lr {lr:g}": t.argmax(1).tolist() for lr, (_, t) in zip(lrs, runs)}  # for paired intervals
    v, t = score(soup(list(range(len(lrs)))))
    r["uniform soup"] = [accuracy(v, val), accuracy(t, test)]
    order = sorted(range(len(lrs)), key=lambda i: -r[f"lr {lrs[i]:g}"][0])
    members, best = [order[0]], r[f"lr {lrs[order[0]]:g}"][0]
    for i in order[1:]:
        candidate = accuracy(score(soup([*members, i]))[0], val)
        if candidate >= best:
            members, best = [*members, i], candidate
    v, t = score(soup(members))
    r["greedy soup"] = [accuracy(v, val), accuracy(t, test)]
    r["greedy soup rates"] = [lrs[i] for i in members]
    r["probability ensemble"] = [accuracy(sum(p[0] for p in runs) / len(runs), val), accuracy(sum(p[1] for p in runs) / len(runs), test)]
    return r


VARIANTS = [(w, c, p) for w in ("harmonic", "uniform") for c in (0.75, 1.0) for p in (0.0, 0.5, 1.0)]


def ppmi_linear(run: Path, windows: list[int]) -> dict:
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer

    from components.pretrain.embedding_init import ppmi_svd
    from components.shared.shards import open_blocks

    tokenizer = AutoTokenizer.from_pretrained(run / PRETRAINED)
    special = set(tokenizer.all_special_ids)
    blocks = open_blocks(run / CLEANED / artifacts.BLOCKS_TRAIN)
    dim = json.loads((run / PRETRAINED / "config.json").read_text())["hidden_size"]
    labeled = pd.read_parquet(run / CLEANED / artifacts.LABELED)
    train, val = labeled[labeled.split == "train"], labeled[labeled.split == "validation"]

    def pooled(vectors, rows):
        x = np.zeros((len(rows), vectors.shape[1]), np.float32)
        for i, ids in enumerate(rows.input_ids):
            ids = [t for t in ids if t not in special]
            if ids:
                x[i] = vectors[ids].mean(0)
        return x

    result = {}
    for window in windows:
        for weighting, smoothing, power in VARIANTS:
            v = ppmi_svd(blocks, len(tokenizer), dim, window=window, special_ids=sorted(special), weighting=weighting, smoothing=smoothing, eig_power=power)
            v = v / np.sqrt((v**2).mean())
            xt, xv = pooled(v, train), pooled(v, val)
            key = f"window {window} {weighting} smoothing {smoothing} power {power}"
            result[key] = max(float((LogisticRegression(C=c, max_iter=2000).fit(xt, train.label).predict(xv) == val.label).mean()) for c in (0.1, 1.0, 10.0))
            print(key, f"{result[key]:.4f}", flush=True)
    return result


def ppmi_pretrain(run: Path, out: Path, window: int | None, weighting: str, smoothing: float, overrides: list[str] = ()) -> dict:
    """The demo's pretrain stage on RUN's cleaned data, with a PPMI variant (`window` None: the preset's
    own init) and preset overrides."""
    from components.pretrain import embedding_init
    from components.pretrain.pretrain import pretrain
    from pipelines.config import load_config

    if window is not None:
        original = embedding_init.ppmi_svd

        def variant(*args, **kwargs):  # initialise() passes its own window: this one wins
            return original(*args, **{**kwargs, "window": window, "weighting": weighting, "smoothing": smoothing})

        embedding_init.ppmi_svd = variant
    config = load_config("demo", ["pretrain.threads=1", f"pretrain.checkpoint_dir={out / 'checkpoints'}", *overrides]).pretrain
    (out / CLEANED).parent.mkdir(parents=True, exist_ok=True)
    if not (out / CLEANED).exists():
        (out / CLEANED).symlink_to((run / CLEANED).resolve())
    return pretrain(out / CLEANED, out / PRETRAINED, config)


def finetune_dropout(folder: Path, dropout: float) -> None:
    """Set the saved encoder's hidden and attention dropout (what fine-tuning then uses)."""
    path = folder / PRETRAINED / "config.json"
    config = json.loads(path.read_text())
    config["hidden_dropout_prob"] = config["attention_probs_dropout_prob"] = dropout
    path.write_text(json.dumps(config, indent=2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recipe_probes", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    p = sub.add_parser("rates")
    p.add_argument("run", type=Path)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rates", default="2e-4,6e-4,1e-3")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--no-control", action="store_true", help="the control does not depend on the encoder's weights: skip it for a new encoder of the same shape")
    only.add_argument("--control-only", action="store_true", help="only the random-init control of RUN's shape (e.g. a longer budget, to see if it was held back)")
    p.add_argument("--against", type=Path, metavar="CLASSIFIER", help="a saved classifier (a run's finetune-op/classifier): its paired test interval against the chosen control run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a preset override (e.g. finetune.max_steps=1600)")
    p.add_argument("--variant", choices=FINETUNE_VARIANTS, help="fine-tune with the token embeddings frozen, or a linear probe first (start_variant)")
    p = sub.add_parser("distil")
    p.add_argument("run", type=Path)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rate", type=float, default=6e-4)
    p.add_argument("--variants", default="pretrained:kd0.5,control:kd0.5,pretrained:ls0.1")
    p = sub.add_parser("ppmi-linear")
    p.add_argument("run", type=Path)
    p.add_argument("--windows", default="2,5,10")
    p = sub.add_parser("ppmi-pretrain")
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--weighting", choices=("harmonic", "uniform"), default="uniform")
    p.add_argument("--smoothing", type=float, default=1.0)
    p.add_argument("--preset-init", action="store_true", help="the preset's own PPMI init, no variant (to probe --set alone)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a preset override (e.g. pretrain.model.dropout=0)")
    p.add_argument("--finetune-dropout", type=float, help="then set the saved encoder's dropout to this, for fine-tuning")
    p = sub.add_parser("selftrain")
    p.add_argument("run", type=Path)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rate", type=float, default=6e-4)
    p.add_argument("--pseudo", default="8000,16000", help="how many pseudo-labelled sentences join train, comma-separated")
    p.add_argument("--pool", type=int, default=100_000, help="corpus sentences the teacher labels")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a preset override (e.g. finetune.max_steps=1600)")
    for action in sub.choices.values():
        action.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.probe == "rates" and args.against and args.no_control:
        parser.error("--against pairs a classifier with the control: drop --no-control")
    needed = {"ppmi-pretrain": (CLEANED,), "selftrain": (CLEANED, PRETRAINED, CLASSIFIER)}.get(args.probe, (CLEANED, PRETRAINED))
    for folder in (args.run / part for part in needed):
        if not folder.is_dir():
            print(f"error: {folder} is missing: RUN is a finished demo run's folder (local_outputs/<run> after make demo)", file=sys.stderr)
            return 2
    if args.probe == "rates":
        models = ["pretrained"] * (not args.control_only) + ["control"] * (not args.no_control)
        result = rates(args.run, args.seed, [float(x) for x in args.rates.split(",")], models, args.set, args.variant, args.against)
    elif args.probe == "distil":
        from bench.distil_probe import distil

        result = distil(args.run, args.seed, args.rate, args.variants.split(","))
    elif args.probe == "selftrain":
        from bench.selftrain_probe import selftrain

        result = selftrain(args.run, args.seed, args.rate, [int(x) for x in args.pseudo.split(",")], args.pool, args.set)
    elif args.probe == "ppmi-linear":
        result = ppmi_linear(args.run, [int(x) for x in args.windows.split(",")])
    else:
        result = ppmi_pretrain(args.run, args.out, None if args.preset_init else args.window, args.weighting, args.smoothing, args.set)
        if args.finetune_dropout is not None:
            finetune_dropout(args.out, args.finetune_dropout)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
