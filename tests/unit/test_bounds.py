"""Bounded work on any input: a 'word' of hundreds of kB and a multi-MB single-line document.

The issue's inputs (a 5-6 MB word that hung tokenizer training for 14+ minutes, a 51 MB line that
took 5.2 GB) are reproduced here at a size that takes tens of seconds unbounded (training time grows faster than
linearly with a word's length: 100 kB alone took 8 s, 200 kB ~30 s) and seconds bounded.
"""

from __future__ import annotations

import json
import random
import re
import signal
import string

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_data import CLEAN, corpus_documents, labeled_sentences, path_config, write_text_files

from components.clean_tokenize.bounds import Bounds
from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
from components.ingest.ingest import ingest
from components.shared import artifacts


def _word(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def test_a_long_word_is_cut_into_pieces_and_counted():
    bounds = Bounds(max_word_chars=10, max_doc_chars=1000)
    assert bounds.words("short words stay as they are") == "short words stay as they are"
    assert bounds.words("x abcdefghijklmnopqrstuvwxy z") == "x abcdefghij klmnopqrst uvwxy z"
    assert bounds.counts.words_split == 1


def test_a_long_document_is_cut_at_the_last_break_and_loses_nothing():
    bounds = Bounds(max_word_chars=100, max_doc_chars=1000)
    para = "word " * 150  # 750 characters
    text = para + "\n\n" + para + "\nline " + "x" * 900 + " tail"
    pieces = bounds.document(text)
    assert "".join(pieces) == text
    assert all(len(p) <= 1000 for p in pieces)
    assert pieces[0].endswith("\n\n")  # the paragraph break wins over a later space
    assert bounds.counts.docs_split == 1 and bounds.counts.doc_pieces == len(pieces) >= 3
    assert Bounds(100, 1000).document("y" * 2500) == ["y" * 1000, "y" * 1000, "y" * 500]  # no break: cut at the limit


def test_the_largest_bounds_the_config_allows_still_work():
    fields = CleanTokenizeConfig.model_fields
    largest = {k: next(m.le for m in fields[k].metadata if getattr(m, "le", None)) for k in ("max_word_chars", "max_doc_chars")}
    config = CleanTokenizeConfig.from_params(largest, "clean_tokenize")  # beyond them: one line, not an OverflowError in re
    bounds = Bounds(config.max_word_chars, config.max_doc_chars)
    assert bounds.words("x" * 200) == "x" * 200 and bounds.document("y " * 600) == ["y " * 600]


def test_a_table_of_short_texts_passes_unchanged():
    table = pa.table({"doc_id": ["1", "2"], "title": ["", ""], "text": ["a b c", "d e"]})
    bounds = Bounds(100, 1000)
    assert list(bounds.tables([table]))[0] is table
    assert bounds.counts.as_dict() == {"words_split": 0, "docs_split": 0, "doc_pieces": 0}


@pytest.fixture
def no_hang():
    """Fail instead of hanging: the unbounded stage ran for minutes on these inputs."""

    def stop(*_):
        raise TimeoutError("clean_tokenize took over 180 s on a bounded input")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(180)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_huge_word_and_a_huge_single_line_document_are_cut_and_counted(tmp_path, no_hang, capsys):
    docs = corpus_documents(20)
    docs.append({"id": "word", "title": "", "text": "It starts plainly, then " + _word(200_000) + " ends."})
    line = " ".join(f"{d['text'].replace(chr(10), ' ')} part {i}" for i in range(25) for d in docs[:20])  # 0.4 MB, one line
    docs.append({"id": "line", "title": "", "text": line})
    rows = labeled_sentences(200)
    rows[0] = {**rows[0], "text": "A fine film " + _word(100_000, 1)}  # train split or not, it is tokenized
    write_text_files(tmp_path / "text", docs, rows)
    ingest(tmp_path / "raw", path_config(tmp_path / "text"))
    config = CleanTokenizeConfig.from_params({**CLEAN, "max_doc_chars": 20_000, "task_adaptive": True, "decontaminate_ngram": None}, "clean_tokenize")

    metrics = clean_tokenize(tmp_path / "raw", tmp_path / "cleaned", config)

    report = json.loads((tmp_path / "cleaned" / artifacts.CLEAN_REPORT).read_text())
    assert report["bounds"]["corpus"]["words_split"] == 1 and report["bounds"]["labeled"]["words_split"] == 1
    assert report["bounds"]["corpus"]["docs_split"] == 2  # the 0.4 MB line and the 200 kB word's document
    assert metrics["clean/corpus_docs_split"] == 2 and metrics["clean/labeled_words_split"] == 1
    corpus = pq.read_table(tmp_path / "cleaned" / artifacts.CORPUS).to_pandas()
    assert corpus["text"].str.len().max() <= 20_000
    assert max(len(w) for t in corpus["text"] for w in t.split()) <= config.max_word_chars
    pieces = corpus[corpus["doc_id"].str.startswith("line")]
    assert len(pieces) >= 15 and corpus["doc_id"].is_unique and "line#1" in set(pieces["doc_id"])
    assert " ".join(pieces["text"]).split() == docs[-1]["text"].split()  # cut at spaces: no word lost or broken
    assert re.search(r"bounds: 2 words over 100 characters cut into pieces \(1 in labeled texts\), 2 documents over 20,000 characters split into \d+", capsys.readouterr().out)


def test_a_huge_labeled_text_is_encoded_from_its_head_and_tail_with_the_same_ids(cleaned_dir):
    import pandas as pd

    from components.clean_tokenize.labeled import cut, head_and_tail, tokenize_labeled
    from components.shared.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(cleaned_dir / artifacts.TOKENIZER_DIR))
    words = labeled_sentences(400)
    huge = " ".join(r["text"] for r in words) * 40  # ~1 MB of ordinary words
    config = CleanTokenizeConfig.from_params(CLEAN, "clean_tokenize")
    window = (config.longest_seq_len + 2) * (config.max_word_chars + 1)
    assert len(head_and_tail(huge, window)) <= 2 * window + 1 < len(huge) // 50
    frame = pd.DataFrame({"id": ["a", "b"], "text": [huge, "a fine film"], "label": [1, 1], "split": ["train", "test"]})
    whole = tokenizer.backend_tokenizer.encode(huge, add_special_tokens=False).ids  # before tokenize_labeled sets truncation
    out, stats = tokenize_labeled(tokenizer, frame, config)
    assert out["input_ids"][0][1:-1].tolist() == cut(whole, config.max_seq_len - 2, config.truncation)
    assert stats["labeled_truncated"] == 1 and stats["labeled_long_rows"] == 1
