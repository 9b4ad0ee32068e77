"""The data half at size: ingest -> clean_tokenize -> validate on a generated 1 GB / 4 GB corpus.

The corpus is generated deterministically from the demo corpus (data/, `make data`): its sentences
form a pool, and each generated document is a seeded random draw of paragraphs of those
sentences, so documents are distinct (no exact or near copy of each other) while the text stays
real English. Every PLANT_EVERY-th document is instead a near-copy of an earlier one (one word in
100 replaced: Jaccard ~0.9 on 5-word shingles), and the table shows how many of those the
near-duplicate rule removed. The file is JSONL, as the demo corpus, under local_outputs/ (never
committed); the labeled set is the demo's.

Each stage runs in its own child process, like a KFP task, with the demo preset's settings and
the quality and near-duplicate rules on; the child reports its own peak RSS (getrusage
RUSAGE_SELF ru_maxrss) and the parent also polls /proc (psutil) every 0.2 s. Run it niced:

    make bench-data                                   # 1 GB and 4 GB: bench/results/data-scale.{md,json}
    nice -n 19 python -m bench.data_scale --sizes 1   # 1 GB only
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CORPUS = ROOT / "data" / "corpus" / "enwiki.jsonl"
DEMO_LABELED = ROOT / "data" / "labeled" / "rt_sentences.csv"
WORK = ROOT / "local_outputs" / "data-scale"
RESULTS = ROOT / "bench" / "results"
PLANT_EVERY = 100  # one document in 100 is a planted near-copy
RSS_LIMIT = 2 * 2**30  # the bound on the data half's peak RSS
STAGE_CONFIG = {  # the demo preset's data settings, with both new rule sets on
    "clean_tokenize": {"vocab_size": 8000, "block_size": 128, "max_seq_len": 96, "quality": {"enabled": True}, "near_dup": {"enabled": True}},
    "validate": {"max_split_overlap": 0.0005},  # the demo preset's: its source lists 2 of its sentences in two splits
}
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def sentence_pool(path: Path = DEMO_CORPUS) -> list[str]:
    """The demo corpus's sentences of 5+ words, in file order."""
    pool = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for paragraph in json.loads(line)["text"].split("\n"):
            pool += [s for s in _SENTENCE.split(paragraph.strip()) if len(s.split()) >= 5]
    return pool


def near_copy(text: str, rng: random.Random, every: int = 100) -> str:
    """`text` with one word in `every` replaced by a filler word."""
    words = text.split(" ")
    for i in range(rng.randrange(every), len(words), every):
        words[i] = rng.choice(["indeed", "notably", "reportedly", "apparently"])
    return " ".join(words)


def documents(pool: list[str], seed: int = 0):
    """An endless deterministic stream of (doc_id, text, planted): 6-14 paragraphs of 3-8 sentences."""
    rng = random.Random(seed)
    recent: list[str] = []  # the copy sources: a ring of the last 1000 distinct documents
    for i in range(10**12):
        if i % PLANT_EVERY == PLANT_EVERY - 1 and recent:
            yield f"g{i:09d}", near_copy(rng.choice(recent), rng), True
            continue
        paragraphs = [" ".join(rng.choices(pool, k=rng.randint(3, 8))) for _ in range(rng.randint(6, 14))]
        text = "\n\n".join(paragraphs)
        if len(recent) < 1000:
            recent.append(text)
        else:
            recent[i % 1000] = text
        yield f"g{i:09d}", text, False


def generate(path: Path, target_bytes: float, seed: int = 0) -> dict:
    """Write the JSONL corpus (id, title, text) of about `target_bytes`; reuse it when present."""
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file() and json.loads(meta.read_text())["target_bytes"] == target_bytes:
        return json.loads(meta.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    written = docs = planted = 0
    with path.open("w", encoding="utf-8") as f:
        for doc_id, text, copy in documents(sentence_pool(), seed):
            line = json.dumps({"id": doc_id, "title": "", "text": text}) + "\n"
            f.write(line)
            written += len(line.encode())
            docs += 1
            planted += copy
            if written >= target_bytes:
                break
    info = {"target_bytes": target_bytes, "bytes": written, "docs": docs, "planted_near_copies": planted, "seed": seed}
    meta.write_text(json.dumps(info))
    return info


_CHILD = """
import json, resource, sys, time
from pathlib import Path
stage, args, config = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
start = time.perf_counter()
if stage == "ingest":
    from components.ingest.ingest import IngestConfig, ingest
    m = ingest(Path(args["out"]), IngestConfig.from_params({"source": "path", "corpus_path": args["corpus"], "labeled_path": args["labeled"]}))
elif stage == "clean_tokenize":
    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
    m = clean_tokenize(Path(args["raw"]), Path(args["out"]), CleanTokenizeConfig.from_params(config))
else:
    from components.validate.validate import ValidateConfig, validate
    m = validate(Path(args["cleaned"]), Path(args["out"]), ValidateConfig.from_params(config))
print("RESULT " + json.dumps({"metrics": m, "seconds": time.perf_counter() - start, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run_stage(stage: str, args: dict, config: dict, log: Path, reuse: bool = False) -> dict:
    """One stage in a child process: its metrics, wall seconds and peak RSS (self-reported and polled).

    `reuse`: a stage whose log of an earlier run ends in its RESULT line is not run again (a long
    size that failed at a later stage resumes there); its seconds are then the child's own and its
    peak RSS the child's getrusage figure."""
    from bench.tokenization import wait_polling_rss

    lines = log.read_text().splitlines() if reuse and log.is_file() else []
    reused = any(line.startswith("RESULT ") for line in lines)
    if reused:
        print(f"[data_scale] {stage}: reusing the finished run in {log}", flush=True)
        seconds, polled = None, 0
    else:
        start = time.perf_counter()
        with log.open("w") as f:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD, stage, json.dumps(args), json.dumps(config)], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
            polled = wait_polling_rss(proc, 0.2)
        seconds, lines = time.perf_counter() - start, log.read_text().splitlines()
        if proc.returncode:
            raise RuntimeError(f"{stage} failed (exit {proc.returncode}), see {log}: {lines[-3:]}")
    result = json.loads(next(line for line in reversed(lines) if line.startswith("RESULT "))[7:])
    return {
        "stage": stage,
        "seconds": result["seconds"] if reused else seconds,
        "peak_rss_bytes": max(result["maxrss"], polled),
        "polled_rss_bytes": polled,
        "metrics": result["metrics"],
        "log": [line for line in lines if line.startswith("[")],
        **({"reused": True} if reused else {}),
    }


def measure(gigabytes: float, reuse: bool = False) -> dict:
    work = WORK / f"{gigabytes:g}gb"
    work.mkdir(parents=True, exist_ok=True)
    corpus = WORK / f"corpus-{gigabytes:g}gb.jsonl"
    start = time.perf_counter()
    info = generate(corpus, gigabytes * 1e9)
    generate_s = time.perf_counter() - start
    stages = [
        run_stage("ingest", {"out": str(work / "raw"), "corpus": str(corpus), "labeled": str(DEMO_LABELED)}, {}, work / "ingest.log", reuse),
        run_stage("clean_tokenize", {"raw": str(work / "raw"), "out": str(work / "cleaned")}, STAGE_CONFIG["clean_tokenize"], work / "clean_tokenize.log", reuse),
        run_stage("validate", {"cleaned": str(work / "cleaned"), "out": str(work / "validated")}, STAGE_CONFIG["validate"], work / "validate.log", reuse),
    ]
    clean = stages[1]["metrics"]
    return {
        "gigabytes": gigabytes,
        "corpus": info,
        "generate_seconds": generate_s,
        "stages": stages,
        "peak_rss_bytes": max(s["peak_rss_bytes"] for s in stages),
        "seconds": sum(s["seconds"] for s in stages),
        "seconds_per_gb": sum(s["seconds"] for s in stages) / (info["bytes"] / 1e9),
        "removed": {k.removeprefix("clean/corpus_removed_"): v for k, v in clean.items() if k.startswith("clean/corpus_removed_")},
        "validate_success": stages[2]["metrics"]["validate/success"],
        "data_docs": str(work / "validated" / "data_docs" / "index.html"),
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "# The data half at size (bench/data_scale.py)",
        "",
        "ingest -> clean_tokenize -> validate, each stage in its own child process, on a generated JSONL corpus (demo-corpus",
        f"sentences in seeded random paragraphs; one document in {PLANT_EVERY} a planted near-copy). Demo preset settings, quality and",
        "near-duplicate rules on, `nice -n 19` on a shared 2-core machine (timings vary 3-6x with the other tenants' load).",
        "",
        "| corpus | documents | stage | peak RSS | seconds | s per GB |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        gb = r["corpus"]["bytes"] / 1e9
        for s in r["stages"]:
            lines.append(f"| {gb:.2f} GB | {r['corpus']['docs']:,} | {s['stage']} | {s['peak_rss_bytes'] / 2**30:.2f} GiB | {s['seconds']:.0f} | {s['seconds'] / gb:.0f} |")
        lines.append(f"| {gb:.2f} GB | | **data half** | **{r['peak_rss_bytes'] / 2**30:.2f} GiB** | **{r['seconds']:.0f}** | **{r['seconds_per_gb']:.0f}** |")
    lines += [
        "",
        "Rows removed by clean_tokenize's corpus rules (planted near-copies: what the generator planted):",
        "",
        "| corpus | planted near-copies | " + " | ".join(results[0]["removed"]) + " | validate |",
        "|---:|---:|" + "---:|" * (len(results[0]["removed"]) + 1),
    ]
    for r in results:
        lines.append(
            f"| {r['corpus']['bytes'] / 1e9:.2f} GB | {r['corpus']['planted_near_copies']:,} | "
            + " | ".join(f"{v:,}" for v in r["removed"].values())
            + f" | {'passed' if r['validate_success'] else 'failed'} |"
        )
    lines += [
        "",
        f"Peak RSS bound: {RSS_LIMIT / 2**30:.0f} GiB; " + ", ".join(f"{r['corpus']['bytes'] / 1e9:.2f} GB: {'within' if r['peak_rss_bytes'] <= RSS_LIMIT else 'OVER'}" for r in results),
        "",
        "Re-measure: `make bench-data` (or `nice -n 19 python -m bench.data_scale --sizes 1`).",
    ]
    for r in results:
        lines += ["", f"clean_tokenize phases at {r['corpus']['bytes'] / 1e9:.2f} GB:", "", *(f"    {line}" for line in r["stages"][1]["log"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 4.0], help="corpus sizes in GB (1e9 bytes of JSONL)")
    parser.add_argument("--out", type=Path, default=RESULTS / "data-scale", help="results path without suffix (.md and .json written)")
    parser.add_argument("--reuse", action="store_true", help="keep the stages an earlier run of a size finished (their logs' RESULT lines) and run the rest")
    args = parser.parse_args(argv)
    if not DEMO_CORPUS.is_file():
        sys.exit(f"error: the demo data is not at {DEMO_CORPUS.parent.parent}: run `make data` first")
    results = []
    for size in args.sizes:
        results.append(measure(size, args.reuse))
        args.out.parent.mkdir(parents=True, exist_ok=True)  # written after each size: a long run keeps what it measured
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(results))
        print(markdown(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
