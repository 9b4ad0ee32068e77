"""Decontamination, task-adaptive pretraining and the labeled length: clean_tokenize on planted data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_data import corpus_documents, labeled_sentences, path_config, write_text_files

from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
from components.clean_tokenize.labeled import AUTO_QUANTILE, PROBE_MIN_CUT, auto_seq_len, choose_truncation, cut
from components.ingest.ingest import ingest
from components.shared import artifacts
from components.shared.decontamination import EvalIndex, digest, ngrams, words
from components.shared.shards import open_blocks

CONFIG = {"vocab_size": 500, "block_size": 32, "max_seq_len": 32, "min_doc_chars": 300}
# Ten words each: shorter than 13, so each counts as one 10-gram of its whole length.
TEST_SENTENCE = "The quiet harbour film moved everyone who saw it twice."
TRAIN_SENTENCE = "Every frame of this strange musical felt carefully made by hand."
PLANTED_DOC = 7


# --- the n-gram functions -------------------------------------------------------------------


def test_words_ignore_case_punctuation_and_whitespace():
    assert words("The  QUIET harbour-film,\n moved!") == ["the", "quiet", "harbour", "film", "moved"]


def test_ngrams_of_long_short_and_too_short_texts():
    tokens = [f"w{i}" for i in range(15)]
    assert ngrams(tokens, 13) == [(0, 13), (1, 13), (2, 13)]
    assert ngrams(tokens[:10], 13) == [(0, 10)]  # 8..12 words: the whole text is one n-gram
    assert ngrams(tokens[:7], 13) == []  # under MIN_WORDS: not indexed at all


def test_digest_is_stable_across_processes():
    # blake2b-8, not Python's salted hash(): the same bytes in every run and on every machine.
    assert digest(["a", "b"]).hex() == "bb37dea5c027f928"


def test_a_short_eval_sentence_copied_anywhere_is_found_and_a_three_word_one_never():
    index = EvalIndex.of([TEST_SENTENCE, "A great movie."])
    assert index.stats() == {"ngram": 13, "min_words": 8, "eval_texts": 2, "eval_texts_indexed": 1, "eval_ngrams": 1}
    host = f"Some prose first. {TEST_SENTENCE.upper().replace(' ', '  ')} A great movie, they said."
    assert index.shared(host) == 1
    assert index.shared("A great movie, a great movie, and then a great movie again.") == 0
    assert index.shared(TEST_SENTENCE.replace("twice", "once")) == 0


def test_a_long_eval_text_is_caught_by_any_of_its_13_grams():
    text = " ".join(f"word{i}" for i in range(30))
    index = EvalIndex.of([text])
    assert len(index) == 30 - 13 + 1
    middle = " ".join(f"word{i}" for i in range(5, 18))  # exactly one 13-gram
    assert index.shared(f"unrelated start {middle} unrelated end") == 1
    assert index.shared(" ".join(f"word{i}" for i in range(5, 17))) == 0  # 12 words: no 13-gram


# --- the labeled length ---------------------------------------------------------------------


def test_auto_seq_len_is_the_quantile_rounded_up_to_8_and_capped():
    assert AUTO_QUANTILE == 0.95
    assert auto_seq_len(list(range(1, 101)), cap=256) == 96  # the 95th of 1..100 is 95
    assert auto_seq_len([10] * 19 + [500], cap=256) == 16  # one outlier does not set the length
    assert auto_seq_len([10] * 18 + [500] * 2, cap=256) == 256  # 10% outliers: capped
    assert auto_seq_len([3, 4], cap=256) == 8


def test_cut_keeps_a_quarter_head_and_the_tail():
    ids = list(range(100))
    assert cut(ids, 8, "head_tail") == [0, 1, 94, 95, 96, 97, 98, 99]
    assert cut(ids, 8, "head") == list(range(8))
    assert cut(ids[:5], 8, "head_tail") == ids[:5]


def _head_labeled(n: int = 240, length: int = 60, seed: int = 0) -> tuple[list[list[int]], pd.DataFrame]:
    """Token-id texts whose label is one id at position 10 among random filler ids (2..49): a
    head cut of 24 keeps it, head_tail's head of 6 loses it. Split by row, 60/20/20."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    raw = [[int(t) for t in rng.integers(2, 50, length)] for _ in range(n)]
    for ids, label in zip(raw, labels):
        ids[10] = 100 + int(label)
    split = ["train" if i % 5 < 3 else ("validation" if i % 5 == 3 else "test") for i in range(n)]
    return raw, pd.DataFrame({"label": labels, "split": split})


def test_auto_truncation_keeps_the_end_that_carries_the_label_on_validation():
    raw, labeled = _head_labeled()
    choice = choose_truncation(raw, labeled, body=24)
    assert choice["chosen"] == "head"
    assert choice["probe"]["head"] > 0.95 and choice["probe"]["head_tail"] < 0.75  # filler alone is chance
    tail = [ids[::-1] for ids in raw]  # the label id 10 from the end: head_tail's tail of 18 keeps it
    assert choose_truncation(tail, labeled, body=24)["chosen"] == "head_tail"
    short = [ids[:20] for ids in raw]  # nothing is cut: no probe, the default
    assert choose_truncation(short, labeled, body=24) == {"chosen": "head_tail", "probe": f"not probed: 0.0% of validation texts cut (under {PROBE_MIN_CUT:.0%})"}


def test_auto_truncation_never_reads_the_test_split():
    raw, labeled = _head_labeled()
    test = (labeled["split"] == "test").to_numpy()
    scrambled = [ids[::-1] if is_test else ids for ids, is_test in zip(raw, test)]
    flipped = labeled.assign(label=np.where(test, 1 - labeled["label"], labeled["label"]))
    assert choose_truncation(scrambled, flipped, body=24) == choose_truncation(raw, labeled, body=24)


def test_auto_truncation_probes_numeric_targets_with_ridge():
    raw, labeled = _head_labeled()
    scored = labeled.assign(label=labeled["label"].astype("float64") * 2.0 - 1.0)
    choice = choose_truncation(raw, scored, body=24)
    assert choice["chosen"] == "head" and choice["probe"]["head"] > choice["probe"]["head_tail"]  # minus the validation RMSE


# --- clean_tokenize on a corpus with a planted test sentence ------------------------------------


def _rows() -> list[dict]:
    rows = labeled_sentences()
    rows += [
        {"id": "t_planted", "text": TEST_SENTENCE, "label": 1, "split": "test"},
        {"id": "r_train", "text": TRAIN_SENTENCE, "label": 1, "split": "train"},
        # A train text that quotes the test sentence: task-adaptive pretraining must drop it too.
        {"id": "r_quote", "text": f"My friend wrote: {TEST_SENTENCE}", "label": 1, "split": "train"},
    ]
    return rows


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The tiny corpus with TEST_SENTENCE inside one document, cleaned with defaults and with
    task_adaptive (and max_seq_len auto)."""
    base = tmp_path_factory.mktemp("planted")
    docs = corpus_documents()
    docs[PLANTED_DOC]["text"] = docs[PLANTED_DOC]["text"].replace("\n\n", f" {TEST_SENTENCE}\n\n", 1)
    ingest(base / "raw", path_config(write_text_files(base / "text", docs, _rows())))
    runs = {"default": {}, "adaptive": {"task_adaptive": True, "max_seq_len": "auto", "max_seq_len_cap": 24}}
    for name, extra in runs.items():
        clean_tokenize(base / "raw", base / name, CleanTokenizeConfig.from_params({**CONFIG, **extra}, "clean_tokenize"))
    return {"base": base, "docs": docs}


def _report(planted, name):
    return artifacts.read_json(planted["base"] / name / artifacts.CLEAN_REPORT)


def _tokenizer(planted, name):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(planted["base"] / name / artifacts.TOKENIZER_DIR / "tokenizer.json"))
    tok.no_truncation()
    return tok


def _contains(planted, name, sentence) -> bool:
    """Whether the training blocks hold the sentence's token ids in a row (block starts skipped)."""
    needle = _tokenizer(planted, name).encode(sentence, add_special_tokens=False).ids
    blocks = open_blocks(planted["base"] / name / artifacts.BLOCKS_TRAIN)
    stream = blocks.take(np.arange(len(blocks)))[:, 1:].ravel().tolist()
    return any(stream[i : i + len(needle)] == needle for i in range(len(stream) - len(needle) + 1))


def test_the_document_holding_a_test_sentence_is_removed_and_counted(planted):
    report = _report(planted, "default")
    assert report["removed"]["corpus"]["contaminated"] == 1
    corpus = pd.read_parquet(planted["base"] / "default" / artifacts.CORPUS)
    assert set(corpus["doc_id"]) == {d["id"] for d in planted["docs"]} - {planted["docs"][PLANTED_DOC]["id"]}
    decon = report["decontamination"]
    # The 6-word review sentences of the fixture are too short to index; only TEST_SENTENCE is.
    assert decon["docs_removed"] == 1 and decon["ngram"] == 13 and decon["min_words"] == 8
    assert decon["eval_texts_indexed"] == 1 and decon["eval_ngrams"] == 1
    assert not _contains(planted, "default", TEST_SENTENCE)


def test_task_adaptive_is_off_by_default(planted):
    report = _report(planted, "default")
    assert report["task_adaptive"] == {"enabled": False, "texts": 0, "removed_contaminated": 0, "tokens": 0}
    assert not (planted["base"] / "default" / artifacts.TASK_ADAPTIVE).exists()
    assert not _contains(planted, "default", TRAIN_SENTENCE)


def test_task_adaptive_packs_train_texts_and_never_test_ones(planted):
    report = _report(planted, "adaptive")
    labeled = pd.read_parquet(planted["base"] / "adaptive" / artifacts.LABELED)
    train = labeled[labeled["split"] == "train"]
    added = pd.read_parquet(planted["base"] / "adaptive" / artifacts.TASK_ADAPTIVE)
    assert added["doc_id"].tolist() == sorted(set(train["id"]) - {"r_quote"})  # id order, the quote dropped
    assert report["task_adaptive"]["texts"] == len(train) - 1 and report["task_adaptive"]["removed_contaminated"] == 1
    assert report["decontamination"]["task_adaptive_removed"] == 1
    tok = _tokenizer(planted, "adaptive")
    assert report["task_adaptive"]["tokens"] == sum(len(tok.encode(t, add_special_tokens=False).ids) for t in added["text"]) > 0
    assert _contains(planted, "adaptive", TRAIN_SENTENCE)
    assert not _contains(planted, "adaptive", TEST_SENTENCE)


def test_auto_max_seq_len_follows_the_train_lengths(planted):
    tokens = _report(planted, "adaptive")["tokens"]
    labeled = pd.read_parquet(planted["base"] / "adaptive" / artifacts.LABELED)
    tok = _tokenizer(planted, "adaptive")
    full = [len(tok.encode(t, add_special_tokens=False).ids) + 2 for t in labeled["text"]]
    train = [n for n, split in zip(full, labeled["split"]) if split == "train"]
    assert tokens["max_seq_len"] == auto_seq_len(train, 24) == -(-tokens["labeled_train_p95_len"] // 8) * 8 < 24
    assert sum(n <= tokens["max_seq_len"] for n in train) >= 0.95 * len(train)
    assert tokens["max_seq_len_setting"] == "auto" and tokens["labeled_truncated"] == sum(n > tokens["max_seq_len"] for n in full) > 0
    assert labeled["input_ids"].map(len).max() == tokens["max_seq_len"]


def test_auto_truncation_records_its_choice_and_evidence_in_the_report_and_metrics(planted, tmp_path):
    config = CleanTokenizeConfig.from_params({**CONFIG, "max_seq_len": 8}, "clean_tokenize")  # truncation: auto, the default
    metrics = clean_tokenize(planted["base"] / "raw", tmp_path / "auto", config)
    tokens = artifacts.read_json(tmp_path / "auto" / artifacts.CLEAN_REPORT)["tokens"]
    assert tokens["truncation_setting"] == "auto" and set(tokens["truncation_probe"]) == {"head_tail", "head"}  # every validation text is cut at 8
    best = max(tokens["truncation_probe"].values())
    assert tokens["truncation_probe"][tokens["truncation"]] == best and (tokens["truncation"] == "head_tail" or tokens["truncation_probe"]["head_tail"] < best)
    assert {k: v for k, v in metrics.items() if k.startswith("clean/truncation_probe_")} == {f"clean/truncation_probe_{c}": v for c, v in tokens["truncation_probe"].items()}


def test_decontamination_can_be_switched_off(planted, tmp_path):
    config = CleanTokenizeConfig.from_params({**CONFIG, "decontaminate_ngram": None}, "clean_tokenize")
    clean_tokenize(planted["base"] / "raw", tmp_path / "off", config)
    report = artifacts.read_json(tmp_path / "off" / artifacts.CLEAN_REPORT)
    assert report["decontamination"] == {"ngram": None} and "contaminated" not in report["removed"]["corpus"]
    assert len(pd.read_parquet(tmp_path / "off" / artifacts.CORPUS)) == len(planted["docs"])
