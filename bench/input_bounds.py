"""Peak memory and time of ingest + clean_tokenize on the issue's hostile inputs (issue 13).

Two corpora, each 200 ordinary documents plus one hostile one:
  word: a 5.5 MB run of random letters with no space (it hung tokenizer training for 14+ min);
  line: a 51 MB single-line document of ordinary words (it peaked at 5.2 GB).
Each runs in a fresh child process, which reports its peak RSS after ingest and after
clean_tokenize (getrusage: the high-water mark of the process), and the seconds of each.
`--unbounded` lifts clean_tokenize's max_word_chars / max_doc_chars to show the old behaviour
(at the issue's sizes that takes GBs and many minutes: pass --scale 0.1 first).

    python -m bench.input_bounds                  # both cases at the issue's sizes
    python -m bench.input_bounds --case word --unbounded --scale 0.02
"""

from __future__ import annotations

import argparse
import json
import random
import string
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"word": 5_500_000, "line": 51_000_000}  # characters, as in the issue
WORDS = "the film story actor music scene critic review history studio audience festival long slow fine dull".split()

CHILD = """
import json, resource, sys, time
from pathlib import Path
from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
from components.ingest.ingest import IngestConfig, ingest
tmp, clean = Path(sys.argv[1]), json.loads(sys.argv[2])
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
ingest(tmp / "raw", IngestConfig(source="path", corpus_path=str(tmp / "corpus.jsonl"), labeled_path=str(tmp / "labeled.csv")))
out = {"ingest_s": time.perf_counter() - t, "ingest_peak_rss": peak()}
t = time.perf_counter()
m = clean_tokenize(tmp / "raw", tmp / "cleaned", CleanTokenizeConfig.from_params(clean, "clean_tokenize"))
out |= {"clean_tokenize_s": time.perf_counter() - t, "peak_rss": peak(), "metrics": {k: v for k, v in m.items() if "split" in k or k == "clean/corpus_docs"}}
print("RESULT " + json.dumps(out))
"""


def build(tmp: Path, case: str, chars: int) -> None:
    rng = random.Random(0)
    docs = [{"id": f"d{i}", "text": " ".join(rng.choice(WORDS) for _ in range(150))} for i in range(200)]
    if case == "word":
        hostile = "".join(rng.choice(string.ascii_lowercase) for _ in range(chars))
    else:
        hostile = " ".join(rng.choice(WORDS) for _ in range(chars // 6))[:chars]
    docs.append({"id": "hostile", "text": hostile})
    with (tmp / "corpus.jsonl").open("w") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")
    rows = ["id,text,label,split"] + [f"s{i},a {'fine' if i % 2 else 'dull'} {rng.choice(WORDS)} film,{i % 2},{('train', 'validation', 'test')[i % 3]}" for i in range(300)]
    (tmp / "labeled.csv").write_text("\n".join(rows) + "\n")


def measure(case: str, scale: float = 1.0, unbounded: bool = False, timeout: float = 3600) -> dict:
    clean = {"vocab_size": 2000, "block_size": 128, "min_doc_chars": 50, "decontaminate_ngram": None}
    if unbounded:
        clean |= {"max_word_chars": 10_000_000, "max_doc_chars": 1_000_000_000}  # the largest the config allows
    with tempfile.TemporaryDirectory(prefix="lmforge-bounds-") as tmp:
        build(Path(tmp), case, int(SIZES[case] * scale))
        proc = subprocess.run([sys.executable, "-c", CHILD, tmp, json.dumps(clean)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not result:
        raise RuntimeError(f"{case}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return {"case": case, "chars": int(SIZES[case] * scale), "unbounded": unbounded, **json.loads(result[0].removeprefix("RESULT "))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(SIZES), action="append", help="default: both")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the issue's sizes")
    ap.add_argument("--unbounded", action="store_true", help="lift the bounds (the behaviour before issue 13)")
    args = ap.parse_args()
    for case in args.case or sorted(SIZES):
        r = measure(case, args.scale, args.unbounded)
        print(
            f"{case:5} {r['chars']:>11,} chars{' (unbounded)' if r['unbounded'] else ''}: ingest {r['ingest_s']:.1f} s peak {r['ingest_peak_rss'] / 2**20:,.0f} MiB; "
            f"clean_tokenize {r['clean_tokenize_s']:.1f} s, peak {r['peak_rss'] / 2**20:,.0f} MiB; {r['metrics']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
