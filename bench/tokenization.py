"""Tokenization speed against the Hugging Face recipe, and peak memory on a 1 GB corpus.

`run` times, on the same texts and tokenizer, interleaved and after a warm-up:
  (a) the raw Rust ceiling: `encode_batch` and `encode_batch_fast` in chunks, ids discarded;
  (b) the `run_mlm` recipe (transformers examples/pytorch/language-modeling/run_mlm.py):
      `Dataset.from_dict(...).map(tokenize_function, batched=True)` then `map(group_texts, batched=True)`;
  (c) LMForge: chunks encoded straight into int32 arrays, packed into blocks, written as shards.
Every row counts the same text tokens (no special tokens), so tokens/s ratios are time ratios.

`rss_check` builds a ~1 GB corpus by repeating the demo corpus, runs the real clean_tokenize
stage on it in a subprocess and reports its peak RSS, tokens/s and shard bytes.

    python -m bench.tokenization                 # ratio table on the demo corpus (data/)
    python -m bench.tokenization --threads 1 2   # the same with the Rust thread pool at 1 and 2
    python -m bench.tokenization --rss 1.0       # the 1 GB peak-RSS check (~10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CORPUS = ROOT / "data" / "corpus" / "enwiki.jsonl"
DEMO_LABELED = ROOT / "data" / "labeled" / "rt_sentences.csv"
CEILING = "encode_batch_fast, ids discarded (ceiling)"
RECIPE = "datasets.map + group_texts (run_mlm)"
LMFORGE = "LMForge tokenize + pack + write shards"


def run(texts: list[str] | Callable[[], Iterable[str]], tokenizer_dir: Path, block_size: int, repeats: int = 3, chunk_chars: int = 4_000_000) -> list[dict]:
    """Rows {"name", "tokens", "seconds", "tokens_per_s", "vs_recipe", "vs_ceiling", "cpu_seconds"}:
    median wall (and CPU) seconds of `repeats` interleaved timed runs of each method, after one
    untimed warm-up run of each. Ratios are of wall time: above 1 is faster than the reference."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    texts = list(texts() if callable(texts) else texts)
    backend = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    backend.no_truncation()  # tokenizer.json keeps the labeled step's truncation; the corpus needs none
    hf_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    methods = {
        "encode_batch, ids discarded": lambda: _raw(backend.encode_batch, texts, chunk_chars),
        CEILING: lambda: _raw(backend.encode_batch_fast, texts, chunk_chars),
        RECIPE: lambda: _run_mlm(hf_tokenizer, texts, block_size),
        LMFORGE: lambda: _lmforge(backend, texts, block_size, chunk_chars),
    }
    tokens = _raw(backend.encode_batch_fast, texts, chunk_chars)
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for rep in range(repeats + 1):  # rep 0 is the warm-up
        for name, method in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            method()
            if rep:
                seconds[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    return [
        {
            "name": name,
            "tokens": tokens,
            "seconds": median[name],
            "tokens_per_s": tokens / median[name],
            "vs_recipe": median[RECIPE] / median[name],
            "vs_ceiling": median[CEILING] / median[name],
            # CPU seconds of all threads: the work done, less sensitive than wall time to a busy machine
            "cpu_seconds": statistics.median(cpu[name]),
        }
        for name in methods
    ]


def rows(cleaned_dir: Path, repeats: int = 3) -> list[dict]:
    """`run` on a clean_tokenize output: its cleaned corpus, tokenizer and block size (for bench/run.py)."""
    import pandas as pd

    from components.shared import artifacts
    from components.shared.shards import open_blocks

    texts = pd.read_parquet(Path(cleaned_dir) / artifacts.CORPUS, columns=["text"])["text"].tolist()
    block_size = open_blocks(Path(cleaned_dir) / artifacts.BLOCKS_TRAIN).block_size
    return run(texts, Path(cleaned_dir) / artifacts.TOKENIZER_DIR, block_size, repeats)


def _chunks(texts: list[str], chunk_chars: int) -> Iterator[list[str]]:
    chunk, size = [], 0
    for text in texts:
        chunk.append(text)
        size += len(text)
        if size >= chunk_chars:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _raw(encode_batch, texts: list[str], chunk_chars: int) -> int:
    return sum(sum(map(len, encode_batch(chunk, add_special_tokens=False))) for chunk in _chunks(texts, chunk_chars))


def _run_mlm(tokenizer, texts: list[str], max_seq_length: int) -> int:
    """run_mlm.py's path for a text corpus without --line_by_line, in memory (no cache files)."""
    import datasets

    from bench import recipes

    datasets.disable_progress_bars()
    raw = datasets.Dataset.from_dict({"text": texts})

    def tokenize_function(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    tokenized = raw.map(tokenize_function, batched=True, remove_columns=["text"])
    return len(tokenized.map(recipes.group_texts, batched=True, fn_kwargs={"block_size": max_seq_length}))


def _lmforge(backend, texts: list[str], block_size: int, chunk_chars: int) -> int:
    from components import objectives
    from components.clean_tokenize.packing import pack_texts

    packing = {"objective": "masked_lm", **objectives.get("masked_lm").PACKING}  # the demo's: one [CLS] per block, [SEP] after each document
    with tempfile.TemporaryDirectory(prefix="lmforge-tok-bench-") as tmp:
        return pack_texts(backend, _chunks(texts, chunk_chars), Path(tmp) / "blocks", block_size, shard_blocks=65536, packing=packing)["n_blocks"]


# --- the 1 GB peak-RSS check --------------------------------------------------------------------


def wait_polling_rss(proc: subprocess.Popen, interval: float) -> int:
    """Wait for `proc`, polling its resident memory every `interval` seconds; the highest seen, in bytes."""
    import psutil

    peak, ps = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(interval)
    proc.wait()
    return peak


def rss_check(gigabytes: float = 1.0, config: dict | None = None, workdir: Path | None = None) -> dict:
    """Repeat the demo corpus to ~`gigabytes` of text, run clean_tokenize on it in a subprocess,
    and return {"corpus_bytes", "docs", "peak_rss_bytes", "seconds", "tokens", "tokens_per_s",
    "shard_bytes", ...}. Each copy of a document gets its own id and a first line naming the
    copy, so the duplicate rule keeps it and the held-out split and tokenizer sample spread over all.
    """
    from components.ingest.ingest import IngestConfig, ingest

    config = {"vocab_size": 8000, "block_size": 128, **(config or {})}  # the demo preset's sizes
    with tempfile.TemporaryDirectory(prefix="lmforge-rss-", dir=workdir) as tmp:
        tmp = Path(tmp)
        ingest(tmp / "demo", IngestConfig.from_params({"source": "path", "corpus_path": str(DEMO_CORPUS), "labeled_path": str(DEMO_LABELED)}, "ingest"))
        (tmp / "raw").mkdir()
        os.link(tmp / "demo" / "labeled.parquet", tmp / "raw" / "labeled.parquet")
        corpus_bytes, docs = _repeat_corpus(tmp / "demo" / "corpus.parquet", tmp / "raw" / "corpus.parquet", gigabytes * 1e9)
        code = (
            "import sys, json; from pathlib import Path;"
            "from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize;"
            "m = clean_tokenize(Path(sys.argv[1]), Path(sys.argv[2]), CleanTokenizeConfig.from_params(json.loads(sys.argv[3])));"
            "print(json.dumps(m))"
        )
        start = time.perf_counter()
        log = tmp / "stage.log"
        with log.open("w") as f:
            proc = subprocess.Popen([sys.executable, "-c", code, str(tmp / "raw"), str(tmp / "cleaned"), json.dumps(config)], cwd=ROOT, stdout=f)
        peak = wait_polling_rss(proc, 0.1)
        seconds = time.perf_counter() - start
        lines = log.read_text().splitlines()
        if proc.returncode:
            raise RuntimeError(f"clean_tokenize failed with exit code {proc.returncode}: {lines[-3:]}")
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        metrics = json.loads(lines[-1])
        shard_bytes = sum(f.stat().st_size for d in ("blocks_train", "blocks_heldout") for f in (tmp / "cleaned" / d).iterdir())
        tokens = metrics["clean/corpus_tokens"] + metrics["clean/heldout_tokens"]
        return {
            "gigabytes": gigabytes,
            "corpus_bytes": corpus_bytes,
            "docs": docs,
            "peak_rss_bytes": max(peak, maxrss),
            "peak_rss_polled_bytes": peak,
            "seconds": seconds,
            "tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "shard_bytes": shard_bytes,
            "n_blocks_train": metrics["clean/n_blocks_train"],
            "tokenizer_train_chars": metrics["clean/tokenizer_train_chars"],
            "phases": [line for line in lines if line.startswith("[clean_tokenize]")],
        }


def _repeat_corpus(src: Path, dst: Path, target_bytes: float) -> tuple[int, int]:
    """Copies of the corpus at `src` into `dst` until its text reaches `target_bytes` (UTF-8),
    one row group per copy (as a streaming writer would), in the columns ingest writes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    demo = pq.read_table(src)
    ids, texts = demo.column("doc_id").to_pylist(), demo.column("text").to_pylist()
    size = sum(len(t.encode()) for t in texts)
    written = docs = 0
    with pq.ParquetWriter(dst, demo.schema) as writer:
        for copy in itertools.count():
            if written >= target_bytes:
                break
            table = demo.set_column(demo.schema.get_field_index("doc_id"), demo.schema.field("doc_id"), pa.array([f"{d}-{copy}" for d in ids], demo.schema.field("doc_id").type))
            copied = [f"Copy {copy}.\n\n{t}" for t in texts]
            table = table.set_column(table.schema.get_field_index("text"), table.schema.field("text"), pa.array(copied, table.schema.field("text").type))
            writer.write_table(table)
            written += size + len(texts) * len(f"Copy {copy}.\n\n")
            docs += len(texts)
    return written, docs


# --- command line -------------------------------------------------------------------------------


def demo_rows(repeats: int) -> list[dict]:
    """ingest + clean_tokenize of the demo data with the demo preset's tokenizer settings, then `rows`."""
    from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
    from components.ingest.ingest import IngestConfig, ingest

    if not DEMO_CORPUS.is_file():
        sys.exit(f"error: the demo data is not at {DEMO_CORPUS.parent.parent}: run `make data` first")
    with tempfile.TemporaryDirectory(prefix="lmforge-tok-bench-") as tmp:
        ingest(Path(tmp) / "raw", IngestConfig.from_params({"source": "path", "corpus_path": str(DEMO_CORPUS), "labeled_path": str(DEMO_LABELED)}, "ingest"))
        clean_tokenize(Path(tmp) / "raw", Path(tmp) / "cleaned", CleanTokenizeConfig.from_params({"vocab_size": 8000, "block_size": 128}))
        return rows(Path(tmp) / "cleaned", repeats)


def markdown(result_rows: list[dict], title: str = "") -> str:
    lines = [f"**{title}**", ""] if title else []
    lines += ["| method | tokens | seconds | tokens/s | vs recipe | vs ceiling | CPU seconds |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result_rows:
        lines.append(f"| {r['name']} | {r['tokens']:,} | {r['seconds']:.2f} | {r['tokens_per_s'] / 1e3:,.0f}k | {r['vs_recipe']:.2f}x | {r['vs_ceiling']:.0%} | {r['cpu_seconds']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tokenization", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method, interleaved (median reported)")
    parser.add_argument("--threads", type=int, nargs="*", help="rerun in a subprocess per Rust thread count (RAYON_NUM_THREADS; 1 = TOKENIZERS_PARALLELISM=false)")
    parser.add_argument("--rss", type=float, metavar="GB", help="run the peak-RSS check on a corpus of GB gigabytes instead")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    if args.rss:
        result = rss_check(args.rss)
        print(json.dumps(result, indent=2) if args.json else _rss_markdown(result))
        return 0
    if args.threads:
        for n in args.threads:
            env = {**os.environ, "RAYON_NUM_THREADS": str(n), "TOKENIZERS_PARALLELISM": "false" if n == 1 else "true"}
            subprocess.run([sys.executable, "-m", "bench.tokenization", "--repeats", str(args.repeats)] + (["--json"] if args.json else []), env=env, cwd=ROOT, check=True)
        return 0
    result = demo_rows(args.repeats)
    threads = os.environ.get("RAYON_NUM_THREADS", "all cores") if os.environ.get("TOKENIZERS_PARALLELISM", "true") != "false" else "1"
    print(json.dumps(result, indent=2) if args.json else markdown(result, f"Tokenization, demo corpus, Rust threads: {threads}, median of {args.repeats}"))
    return 0


def _rss_markdown(r: dict) -> str:
    return "\n".join(
        [
            f"**clean_tokenize on a {r['corpus_bytes'] / 1e9:.2f} GB corpus ({r['docs']:,} documents, the demo corpus repeated)**",
            "",
            "| peak RSS | seconds | tokens | tokens/s | shard bytes |",
            "|---:|---:|---:|---:|---:|",
            f"| {r['peak_rss_bytes'] / 2**30:.2f} GiB | {r['seconds']:.0f} | {r['tokens']:,} | {r['tokens_per_s'] / 1e3:,.0f}k | {r['shard_bytes'] / 2**20:,.0f} MiB |",
            "",
            *r["phases"],
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
