"""clean_tokenize on real ingest output: cleaning rules, WordPiece tokenizer, packed blocks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_text, clean_tokenize, heldout_rows
from components.clean_tokenize.packing import BlockPacker, encode, framing, pack_texts
from components.ingest.ingest import IngestConfig, ingest
from components.objectives.masked_lm import PACKING as MASKED_LM
from components.shared import artifacts
from components.shared.errors import UserError
from components.shared.shards import open_blocks

CONFIG = {"vocab_size": 500, "block_size": 32, "max_seq_len": 32, "min_doc_chars": 300}
LONG_REVIEW = "Opening words of a review that rambles on. " + "And on. " * 20 + "Final verdict: superb."


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("\ufb01ne \ufb02ow", "fine flow"),  # NFKC folds the ligatures
        ("\uff21\uff22\uff23 \u2460", "ABC 1"),  # full-width letters, circled digit
        ("a\x00b\x07c\u200bd\ufeffe", "a b c d e"),  # control and zero-width characters
        ("  many   spaces\tand\u00a0tabs  ", "many spaces and tabs"),
        ("para one.\r\n\r\n\r\n  \npara two.\rline", "para one.\n\npara two.\nline"),
        ("\n\n  padded  \n\n", "padded"),
    ],
)
def test_clean_text(raw, cleaned):
    assert clean_text(raw) == cleaned


def test_clean_text_without_normalization_keeps_compatibility_characters():
    assert clean_text("\ufb01ne  x", normalization="none") == "\ufb01ne x"
    assert clean_text("\ufb01ne", normalization="NFC") == "\ufb01ne"


@pytest.fixture(scope="module")
def messy(text_files, tmp_path_factory):
    """A small ingest output with one row for each cleaning rule, cleaned with max_seq_len 8 (and
    head_tail truncation set, not auto's choice)."""
    base = tmp_path_factory.mktemp("messy")
    docs = [json.loads(line) for line in (text_files / "corpus.jsonl").read_text().splitlines()[:12]]
    docs += [
        {"id": "dup", "title": "", "text": "  " + docs[0]["text"].replace(". ", ".   ") + "\n\n"},  # same after cleaning
        {"id": "short", "title": "", "text": "Too short to teach anything."},
        {"id": "control", "title": "", "text": "\x00\x07\u200b"},  # empty once control characters go
    ]
    (base / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    rows = pd.read_csv(text_files / "labeled.csv", dtype={"id": str}).head(40)
    extra = [
        ("x1", rows.text[0], 1, "train"),  # duplicate text
        ("x2", "ok", 1, "train"),  # shorter than min_chars (3)
        ("x3", LONG_REVIEW, 0, "train"),  # longer than max_chars (120): kept, its tokens cut head+tail
        ("x4", "\ufeff\u200b", 0, "test"),  # empty after cleaning
    ]
    rows = pd.concat([rows, pd.DataFrame(extra, columns=rows.columns)], ignore_index=True)
    rows.to_csv(base / "labeled.csv", index=False)
    ingest(base / "raw", IngestConfig(source="path", corpus_path=str(base / "corpus.jsonl"), labeled_path=str(base / "labeled.csv")))
    config = CleanTokenizeConfig.from_params({**CONFIG, "max_chars": 120, "max_seq_len": 8, "truncation": "head_tail"}, "clean_tokenize")
    metrics = clean_tokenize(base / "raw", base / "cleaned", config)
    return {"dir": base / "cleaned", "metrics": metrics, "docs": docs, "rows": rows}


def test_each_rule_counts_the_rows_it_removed(messy):
    report = artifacts.read_json(messy["dir"] / artifacts.CLEAN_REPORT)
    # A long labeled text is no longer a removal rule (it is kept and truncated); decontamination
    # is one for the corpus, and this corpus shares no 13-gram with the evaluation texts.
    assert report["removed"] == {
        "corpus": {"empty": 1, "duplicate": 1, "too_short": 1, "contaminated": 0},
        "labeled": {"empty": 1, "duplicate": 1, "too_short": 1},
    }
    assert messy["metrics"]["clean/corpus_removed_duplicate"] == 1
    assert messy["metrics"]["clean/labeled_removed_too_short"] == 1
    corpus = pd.read_parquet(messy["dir"] / artifacts.CORPUS)
    labeled = pd.read_parquet(messy["dir"] / artifacts.LABELED)
    assert corpus["doc_id"].tolist() == [d["id"] for d in messy["docs"][:12]]  # the first of a duplicate stays
    assert not {"x1", "x2", "x4"} & set(labeled["id"]) and "x3" in set(labeled["id"])
    assert report["rows"] == {"corpus": len(corpus), "labeled": len(labeled)} == {"corpus": 12, "labeled": 41}


def test_a_long_labeled_text_is_kept_whole_and_its_ids_cut_head_and_tail(messy):
    labeled = pd.read_parquet(messy["dir"] / artifacts.LABELED).set_index("id")
    report = artifacts.read_json(messy["dir"] / artifacts.CLEAN_REPORT)["tokens"]
    assert labeled.loc["x3", "text"] == LONG_REVIEW and report["labeled_long_rows"] == 1
    tok = _backend(messy["dir"])
    ids = tok.encode(LONG_REVIEW, add_special_tokens=False).ids
    cls, sep = _special_ids(messy["dir"])
    # max_seq_len 8: 6 text tokens, a quarter (1) from the head, the other 5 from the tail.
    assert labeled.loc["x3", "input_ids"].tolist() == [cls, ids[0], *ids[-5:], sep]
    assert tok.decode(ids[-5:]).endswith("superb.") and "opening".startswith(tok.decode(ids[:1]))
    assert report["truncation"] == report["truncation_setting"] == "head_tail" and report["truncation_probe"] is None and report["max_seq_len"] == 8


def test_labeled_ids_are_truncated_to_max_seq_len_and_keep_sep(messy):
    labeled = pd.read_parquet(messy["dir"] / artifacts.LABELED)
    report = artifacts.read_json(messy["dir"] / artifacts.CLEAN_REPORT)
    cls, sep = _special_ids(messy["dir"])
    assert all(len(ids) <= 8 and ids[0] == cls and ids[-1] == sep for ids in labeled["input_ids"])
    tok = _backend(messy["dir"])
    full = np.array([len(tok.encode(t, add_special_tokens=False).ids) + 2 for t in labeled["text"]])
    assert 0 < (full > 8).sum() == report["tokens"]["labeled_truncated"]
    assert report["tokens"]["labeled_truncated_frac"] == pytest.approx((full > 8).mean())


def _all_blocks(path):
    blocks = open_blocks(path)
    return blocks.take(np.arange(len(blocks)))


def _special_ids(cleaned):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cleaned / artifacts.TOKENIZER_DIR)
    return tok.cls_token_id, tok.sep_token_id


def test_blocks_are_packed_int32_with_cls_and_no_padding(cleaned_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    report = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)
    for name, key in ((artifacts.BLOCKS_TRAIN, "n_blocks_train"), (artifacts.BLOCKS_HELDOUT, "n_blocks_heldout")):
        blocks = _all_blocks(cleaned_dir / name)
        assert blocks.dtype == np.int32 and blocks.ndim == 2
        assert blocks.shape == (report["tokens"][key], CONFIG["block_size"]) and len(blocks) > 0
        assert (blocks[:, 0] == tok.cls_token_id).all()
        assert not (blocks == tok.pad_token_id).any()
        assert (blocks[:, 1:] != tok.cls_token_id).all()  # [CLS] only at the start of a block
        assert ((blocks >= 0) & (blocks < len(tok))).all()
    # Documents are joined by [SEP]: the blocks hold about one per document.
    train = _all_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN)
    corpus = pd.read_parquet(cleaned_dir / artifacts.CORPUS)
    assert 0 < (train == tok.sep_token_id).sum() <= len(corpus)


def test_blocks_decode_to_the_corpus_text(cleaned_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    corpus = " ".join(pd.read_parquet(cleaned_dir / artifacts.CORPUS)["text"]).lower()
    first = open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN).take([0])[0, 1:]
    text = tok.decode(first[first != tok.sep_token_id].tolist())
    words = text.split()[1:-1]  # the ends may be cut mid-word
    assert len(words) > 10 and " ".join(words[:5]).replace(" .", ".").replace(" ,", ",") in corpus


def test_saved_tokenizer_loads_and_round_trips(cleaned_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    report = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)
    assert len(tok) == report["tokens"]["vocab_size"] <= CONFIG["vocab_size"]
    assert report["tokenizer_hash"] == hashlib.sha256((cleaned_dir / artifacts.TOKENIZER_DIR / "tokenizer.json").read_bytes()).hexdigest()

    sentence = "The director praised a wonderful performance after the premiere."
    ids = tok(sentence)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded.replace(" .", ".") == sentence.lower()  # uncased
    assert tok(decoded)["input_ids"] == ids
    # The labeled input_ids are exactly what the saved tokenizer gives.
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    row = labeled.iloc[0]
    assert tok(row["text"], truncation=True, max_length=CONFIG["max_seq_len"])["input_ids"] == row["input_ids"].tolist()


def test_labeled_input_ids_are_framed_and_bounded(cleaned_dir):
    cls, sep = _special_ids(cleaned_dir)
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    assert len(labeled) > 0 and labeled["id"].is_unique
    for ids in labeled["input_ids"]:
        assert ids[0] == cls and ids[-1] == sep and 2 < len(ids) <= CONFIG["max_seq_len"]
        assert (ids[1:-1] != sep).all() and (ids[1:-1] != cls).all()


@pytest.fixture(scope="module")
def again(raw_dir, tmp_path_factory):
    """A second clean_tokenize run on the same ingest output and config."""
    out = tmp_path_factory.mktemp("again") / "cleaned"
    clean_tokenize(raw_dir, out, CleanTokenizeConfig.from_params(CONFIG, "clean_tokenize"))
    return out


def test_same_input_gives_the_same_cleaned_tables(cleaned_dir, again):
    for name in (artifacts.CORPUS, artifacts.LABELED):
        first, second = (pd.read_parquet(d / name).drop(columns="input_ids", errors="ignore") for d in (cleaned_dir, again))
        pd.testing.assert_frame_equal(first, second)
    first, second = (artifacts.read_json(d / artifacts.CLEAN_REPORT) for d in (cleaned_dir, again))
    assert first["removed"] == second["removed"] and first["rows"] == second["rows"]
    assert first["tokens"]["n_blocks_heldout"] > 0 and second["tokens"]["n_blocks_heldout"] > 0


def test_same_input_gives_the_same_tokenizer_and_blocks(cleaned_dir, again):
    first, second = (artifacts.read_json(d / artifacts.CLEAN_REPORT) for d in (cleaned_dir, again))
    assert first["tokenizer_hash"] == second["tokenizer_hash"]
    assert first == second
    for name in (artifacts.BLOCKS_TRAIN, artifacts.BLOCKS_HELDOUT):
        assert np.array_equal(_all_blocks(cleaned_dir / name), _all_blocks(again / name))
    ids = [pd.read_parquet(d / artifacts.LABELED)["input_ids"].map(list).tolist() for d in (cleaned_dir, again)]
    assert ids[0] == ids[1]


def test_heldout_documents_are_not_in_the_training_blocks(cleaned_dir):
    train = _all_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN)
    heldout = _all_blocks(cleaned_dir / artifacts.BLOCKS_HELDOUT)
    train_rows = {row.tobytes() for row in train}
    assert not any(row.tobytes() in train_rows for row in heldout)


def test_missing_input_names_the_stage_to_run(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(UserError, match=r"corpus\.parquet is missing: run the ingest stage first"):
        clean_tokenize(tmp_path / "raw", tmp_path / "out" / "cleaned", CleanTokenizeConfig())
    assert not (tmp_path / "out").exists()


def test_a_corpus_too_short_for_one_block_is_a_user_error(raw_dir, tmp_path):
    config = CleanTokenizeConfig.from_params({**CONFIG, "block_size": 100_000}, "clean_tokenize")
    with pytest.raises(UserError, match="block_size") as info:
        clean_tokenize(raw_dir, tmp_path / "out" / "cleaned", config)
    assert "\n" not in str(info.value)
    # Found only after tokenizing, inside the staged output: its temporary folder is gone too.
    assert list((tmp_path / "out").iterdir()) == []


# --- streaming: chunks, shards, the tokenizer sample ------------------------------------------


@pytest.fixture(scope="module")
def streamed(raw_dir, tmp_path_factory):
    """The same input cleaned one document per chunk into shards of 3 blocks."""
    out = tmp_path_factory.mktemp("streamed") / "cleaned"
    clean_tokenize(raw_dir, out, CleanTokenizeConfig.from_params({**CONFIG, "chunk_chars": 1, "shard_blocks": 3}, "clean_tokenize"))
    return out


def test_tiny_chunks_and_shards_give_byte_identical_blocks(cleaned_dir, streamed):
    for name in (artifacts.BLOCKS_TRAIN, artifacts.BLOCKS_HELDOUT):
        one, many = open_blocks(cleaned_dir / name), open_blocks(streamed / name)
        assert len(one._shards) == 1 and len(many._shards) == -(-len(many) // 3)  # ceil: the last may be partial
        assert _all_blocks(cleaned_dir / name).tobytes() == _all_blocks(streamed / name).tobytes()
    # One row group per document: the corpus went through cleaning one chunk at a time too.
    assert pq.ParquetFile(streamed / artifacts.CORPUS).metadata.num_row_groups == len(pd.read_parquet(cleaned_dir / artifacts.CORPUS))
    pd.testing.assert_frame_equal(pd.read_parquet(cleaned_dir / artifacts.CORPUS), pd.read_parquet(streamed / artifacts.CORPUS))
    first, second = (artifacts.read_json(d / artifacts.CLEAN_REPORT) for d in (cleaned_dir, streamed))
    assert first == second


def _backend(cleaned_dir):
    """The saved tokenizer without the truncation the labeled step left in tokenizer.json."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(cleaned_dir / artifacts.TOKENIZER_DIR / "tokenizer.json"))
    tok.no_truncation()
    return tok


def test_blocks_hold_exactly_the_documents_tokens_in_order(cleaned_dir):
    """Each split is its documents' ids, [SEP] after each, cut into [CLS] + (block_size - 1) pieces."""
    tok = _backend(cleaned_dir)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    corpus = pd.read_parquet(cleaned_dir / artifacts.CORPUS)
    heldout = heldout_rows(cleaned_dir / artifacts.CORPUS, CleanTokenizeConfig().heldout_pct)
    report = artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)["tokens"]
    body = CONFIG["block_size"] - 1
    for name, side, key in ((artifacts.BLOCKS_TRAIN, False, "corpus_tokens"), (artifacts.BLOCKS_HELDOUT, True, "heldout_tokens")):
        docs = [tok.encode(t, add_special_tokens=False).ids for t in corpus["text"][heldout == side]]
        stream = [i for ids in docs for i in ids + [sep]]
        n = len(stream) // body
        expected = np.array([[cls] + stream[k * body : (k + 1) * body] for k in range(n)], dtype=np.int32)
        assert np.array_equal(_all_blocks(cleaned_dir / name), expected)
        assert report[key] == sum(map(len, docs)) == open_blocks(cleaned_dir / name).tokens


def test_packer_carries_the_tail_across_chunks(cleaned_dir, tmp_path):
    """Fed in uneven chunks (some empty), the packer never holds a whole block back."""
    tok = _backend(cleaned_dir)
    texts = pd.read_parquet(cleaned_dir / artifacts.CORPUS)["text"].tolist()
    reference = pack_texts(tok, [texts], tmp_path / "one", 16, shard_blocks=1000, packing=MASKED_LM)
    packer = BlockPacker(tmp_path / "many", 16, 7, framing(tok, MASKED_LM))
    start = 0
    for size in [0, 1, 5, 0, 2, 13, 3] * 10:
        packer.add(encode(tok, texts[start : start + size]))
        start += size
        assert len(packer._carry) < 15
    packer.add(encode(tok, texts[start:]))
    index = packer.close()
    assert index["n_blocks"] == reference["n_blocks"] > 7 and index["tokens"] == reference["tokens"]
    assert np.array_equal(_all_blocks(tmp_path / "many"), _all_blocks(tmp_path / "one"))


def test_tokenizer_trains_on_a_capped_deterministic_sample(raw_dir, tmp_path):
    corpus_chars = int(pd.read_parquet(raw_dir.parent / "cleaned" / artifacts.CORPUS)["text"].str.len().sum())
    config = CleanTokenizeConfig.from_params({**CONFIG, "tokenizer_train_chars": corpus_chars // 3}, "clean_tokenize")
    reports = []
    for run in ("a", "b"):
        clean_tokenize(raw_dir, tmp_path / run, config)
        reports.append(artifacts.read_json(tmp_path / run / artifacts.CLEAN_REPORT))
    used = reports[0]["tokens"]["tokenizer_train_chars"]
    assert 0 < used < corpus_chars * 0.6 and reports[0] == reports[1]
    full = artifacts.read_json(raw_dir.parent / "cleaned" / artifacts.CLEAN_REPORT)
    assert full["tokens"]["tokenizer_train_chars"] == corpus_chars
    assert reports[0]["tokenizer_hash"] != full["tokenizer_hash"]  # a different sample, a different vocabulary


def test_a_corpus_emptied_by_cleaning_is_a_user_error(raw_dir, tmp_path):
    config = CleanTokenizeConfig.from_params({**CONFIG, "min_doc_chars": 10**9}, "clean_tokenize")
    with pytest.raises(UserError, match=r"no corpus document survived cleaning .*'too_short': 40.*min_doc_chars"):
        clean_tokenize(raw_dir, tmp_path / "out" / "cleaned", config)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_rule_removing_too_many_labeled_rows_stops_the_run_naming_the_rule_and_setting(text_files, tmp_path, capsys):
    """min_chars set for documents meets short reviews: one line naming the rule and the setting."""
    raw = tmp_path / "raw"
    ingest(raw, IngestConfig(source="path", corpus_path=str(text_files / "corpus.jsonl"), labeled_path=str(text_files / "labeled.csv")))
    config = CleanTokenizeConfig.from_params({**CONFIG, "min_chars": 40}, "clean_tokenize")
    with pytest.raises(UserError) as info:
        clean_tokenize(raw, tmp_path / "cleaned", config)
    message = str(info.value)
    assert message.startswith("clean_tokenize rule 'too_short'") and "\n" not in message
    assert "clean_tokenize.min_chars" in message and "clean_tokenize.max_labeled_removed (5%)" in message
    assert "removed from the labeled rows (of 400): empty 0, duplicate 0, too_short " in capsys.readouterr().out
    assert not (tmp_path / "cleaned").exists()


def test_labeled_duplicates_are_removed_within_a_split_and_kept_across_splits(text_files, tmp_path):
    """A copy inside one split is dropped (counted); a text in train and test stays for validate to fail on."""
    rows = pd.read_csv(text_files / "labeled.csv", dtype={"id": str})
    train = rows[rows.split == "train"].iloc[0]
    extra = pd.DataFrame([("y1", train.text, train.label, "train"), ("y2", train.text, train.label, "test")], columns=rows.columns)
    pd.concat([rows, extra]).to_csv(tmp_path / "labeled.csv", index=False)
    ingest(tmp_path / "raw", IngestConfig(source="path", corpus_path=str(text_files / "corpus.jsonl"), labeled_path=str(tmp_path / "labeled.csv")))
    clean_tokenize(tmp_path / "raw", tmp_path / "cleaned", CleanTokenizeConfig.from_params(CONFIG, "clean_tokenize"))
    report = artifacts.read_json(tmp_path / "cleaned" / artifacts.CLEAN_REPORT)
    assert report["removed"]["labeled"]["duplicate"] == 1
    kept = pd.read_parquet(tmp_path / "cleaned" / artifacts.LABELED)
    assert sorted(kept.loc[kept.text == train.text, "split"]) == ["test", "train"]
