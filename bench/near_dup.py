"""rensa against datasketch for clean_tokenize's near-duplicate rule: speed and recall on planted copies.

The corpus is bench/data_scale.py's generator (demo-corpus sentences in seeded random paragraphs;
one document in 100 a near-copy of an earlier one, one word in 100 replaced), so the right
answer is known: recall = planted copies removed / planted, false positives = other documents
removed. Every method sees the same word 5-gram shingle sets (built once, not timed) and runs
interleaved with the others, best of `--repeats` (a shared 2-core machine: compare the ratios):

- each library's signatures fed to the numpy bucket-sort banding LMForge uses (near_dup.py),
- each library's own LSH index (query, then insert), as its documentation shows.

    python -m bench.near_dup                # bench/results/near-dup.{md,json}
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.data_scale import DEMO_CORPUS, RESULTS, documents, sentence_pool
from components.clean_tokenize.near_dup import NearDupConfig, NearDupIndex, optimal_bands, shingles

CONFIG = NearDupConfig(enabled=True)  # threshold 0.8, 128 permutations, 5-word shingles, seed 42


def corpus(n: int) -> tuple[list[list[str]], np.ndarray]:
    docs = list(itertools.islice(documents(sentence_pool()), n))
    return [shingles(text, CONFIG.shingle_size) for _, text, _ in docs], np.array([planted for *_, planted in docs])


def rensa_banded(sets):
    from rensa import RMinHash

    index = NearDupIndex(CONFIG)
    index.add_signatures(np.asarray(RMinHash.digests_from_token_sets(sets, CONFIG.num_perm, CONFIG.seed), dtype=np.uint64))
    return index.duplicates()


def rensa_c_banded(sets):
    from rensa import CMinHash

    index = NearDupIndex(CONFIG)
    index.add_signatures(np.asarray(CMinHash.digests_from_token_sets(sets, CONFIG.num_perm, CONFIG.seed), dtype=np.uint64))
    return index.duplicates()


def datasketch_banded(sets):
    from datasketch import MinHash

    index = NearDupIndex(CONFIG)
    hashes = MinHash.bulk([[s.encode() for s in shingle_set] for shingle_set in sets], num_perm=CONFIG.num_perm, seed=CONFIG.seed)
    index.add_signatures(np.stack([m.hashvalues for m in hashes]).astype(np.uint64))
    return index.duplicates()


def datasketch_lsh(sets):
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=CONFIG.threshold, num_perm=CONFIG.num_perm, params=optimal_bands(CONFIG.threshold, CONFIG.num_perm))
    dup = np.zeros(len(sets), dtype=bool)
    for i, m in enumerate(MinHash.bulk([[s.encode() for s in shingle_set] for shingle_set in sets], num_perm=CONFIG.num_perm, seed=CONFIG.seed)):
        dup[i] = bool(lsh.query(m))
        lsh.insert(i, m)
    return dup


def rensa_lsh(sets):
    from rensa import RMinHash, RMinHashLSH

    bands, _ = optimal_bands(CONFIG.threshold, CONFIG.num_perm)
    bands = max(b for b in range(1, bands + 1) if CONFIG.num_perm % b == 0)  # rensa needs num_perm = bands x rows: 8 x 16
    lsh = RMinHashLSH(CONFIG.threshold, CONFIG.num_perm, bands)
    dup = np.zeros(len(sets), dtype=bool)
    for i, m in enumerate(RMinHash.from_token_sets(sets, CONFIG.num_perm, CONFIG.seed)):
        dup[i] = bool(lsh.query(m))
        lsh.insert(i, m)
    return dup


METHODS = {
    "rensa RMinHash + LMForge banding (the pipeline's)": rensa_banded,
    "rensa CMinHash + LMForge banding": rensa_c_banded,
    "datasketch MinHash.bulk + LMForge banding": datasketch_banded,
    "rensa RMinHashLSH index (8 bands x 16 rows)": rensa_lsh,
    "datasketch MinHashLSH index": datasketch_lsh,
}


def run(n: int, repeats: int) -> dict:
    sets, planted = corpus(n)
    seconds = {name: [] for name in METHODS}
    found = {}
    for _ in range(repeats):
        for name, method in METHODS.items():
            start = time.perf_counter()
            found[name] = method(sets)
            seconds[name].append(time.perf_counter() - start)
    base = min(seconds[next(iter(METHODS))])
    rows = [
        {
            "method": name,
            "seconds": min(seconds[name]),
            "vs_pipeline": min(seconds[name]) / base,
            "recall": float((found[name] & planted).sum() / planted.sum()),
            "false_positives": int((found[name] & ~planted).sum()),
        }
        for name in METHODS
    ]
    return {"docs": n, "planted": int(planted.sum()), "shingles": int(sum(map(len, sets))), "repeats": repeats, "rows": rows}


def markdown(r: dict) -> str:
    lines = [
        "# Near-duplicate removal: rensa against datasketch (bench/near_dup.py)",
        "",
        f"{r['docs']:,} generated documents ({r['shingles']:,} word 5-gram shingles), {r['planted']} planted near-copies (Jaccard ~0.9);",
        f"threshold {CONFIG.threshold}, {CONFIG.num_perm} permutations, bands x rows {optimal_bands(CONFIG.threshold, CONFIG.num_perm)}; best of {r['repeats']}, interleaved,",
        "on a shared 2-core machine (compare ratios). Shingling (the same for all) not timed.",
        "",
        "| method | seconds | time vs the pipeline's | recall | false positives |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {x['method']} | {x['seconds']:.2f} | {x['vs_pipeline']:.1f}x | {x['recall']:.3f} | {x['false_positives']} |" for x in r["rows"]]
    lines += ["", "Re-measure: `python -m bench.near_dup` (needs the dev extra: datasketch)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.near_dup", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "near-dup")
    args = parser.parse_args(argv)
    if not DEMO_CORPUS.is_file():
        sys.exit(f"error: the demo data is not at {DEMO_CORPUS.parent.parent}: run `make data` first")
    result = run(args.docs, args.repeats)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
