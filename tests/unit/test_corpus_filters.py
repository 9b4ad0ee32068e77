"""Near-duplicate removal and quality rules on a tiny real corpus streamed through clean_corpus."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from tiny_data import corpus_documents

from components.clean_tokenize.cleaning import clean_corpus
from components.clean_tokenize.near_dup import NearDupConfig, NearDupIndex, optimal_bands, shingles
from components.clean_tokenize.quality import QualityConfig, failed_rule

PLANTED = 6  # near-copies planted in the corpus


def perturb(text: str, every: int, rng: random.Random) -> str:
    """`text` with one word in `every` replaced: a near-copy whose similarity falls as `every` shrinks."""
    words = text.split(" ")
    for i in range(rng.randrange(every), len(words), every):
        words[i] = rng.choice(["indeed", "notably", "reportedly", "apparently"])
    return " ".join(words)


def write_corpus(path, docs: list[dict]) -> None:
    pd.DataFrame({"doc_id": [d["id"] for d in docs], "title": "", "text": [d["text"] for d in docs]}).to_parquet(path, index=False)


@pytest.fixture(scope="module")
def planted():
    """40 distinct documents, each a longer one (three of the generator's texts), then near-copies
    (one word in 100 changed: Jaccard ~0.89 on 5-word shingles) of the first PLANTED, and two far
    copies (one word in 20: ~0.55). Distinct documents share at most 0.14."""
    base = corpus_documents(120)
    docs = [{"id": f"d{i:02d}", "text": "\n\n".join(base[3 * i + k]["text"] for k in range(3))} for i in range(40)]
    rng = random.Random(7)
    near = [{"id": f"near{i}", "text": perturb(docs[i]["text"], 100, rng)} for i in range(PLANTED)]
    far = [{"id": f"far{i}", "text": perturb(docs[10 + i]["text"], 20, rng)} for i in range(2)]
    return docs + near + far


def run(tmp_path, docs, chunk_chars=2000, **rules):
    write_corpus(tmp_path / "in.parquet", docs)
    out = tmp_path / "out.parquet"
    result = clean_corpus(tmp_path / "in.parquet", out, "NFKC", 50, chunk_chars, **rules)
    return result, pd.read_parquet(out)


def test_near_copies_are_removed_and_far_copies_kept(planted, tmp_path):
    result, kept = run(tmp_path, planted, near_dups=NearDupConfig(enabled=True))
    assert result["removed"]["near_duplicate"] == PLANTED
    assert result["removed"]["duplicate"] == 0  # none is an exact copy
    assert set(kept["doc_id"]) == {d["id"] for d in planted} - {f"near{i}" for i in range(PLANTED)}
    assert result["rows"] == len(kept) and result["chars"] == kept["text"].str.len().sum()
    assert not list(tmp_path.glob(".*before-near-dup"))  # the first pass's file is gone


def test_near_dup_is_deterministic_and_independent_of_the_chunk_size(planted, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _, one = run(tmp_path / "a", planted, chunk_chars=10**9, near_dups=NearDupConfig(enabled=True))
    _, two = run(tmp_path / "b", planted, chunk_chars=500, near_dups=NearDupConfig(enabled=True))
    assert one.equals(two)


def test_a_lower_threshold_catches_the_far_copies_too(planted, tmp_path):
    result, kept = run(tmp_path, planted, near_dups=NearDupConfig(enabled=True, threshold=0.5))
    assert result["removed"]["near_duplicate"] == PLANTED + 2
    assert set(kept["doc_id"]) == {f"d{i:02d}" for i in range(40)}  # no distinct document lost


def test_off_by_default_and_no_rule_listed(planted, tmp_path):
    result, kept = run(tmp_path, planted)
    assert "near_duplicate" not in result["removed"] and len(kept) == len(planted)


def test_band_choice_matches_the_usual_optimum():
    assert optimal_bands(0.8, 128) == (9, 13)  # datasketch's _optimal_param gives the same
    bands, rows = optimal_bands(0.5, 64)
    assert bands * rows <= 64 and 0.3 < (1 / bands) ** (1 / rows) < 0.7  # the S-curve's midpoint near the threshold


def test_shingles_of_a_short_text_are_the_text_and_an_empty_index_marks_nothing():
    assert shingles("Two Words", 5) == ["two words"]
    assert sorted(shingles("a b c a b", 2)) == ["a b", "b c", "c a"]
    assert NearDupIndex(NearDupConfig()).duplicates().tolist() == []


# One document failing each quality rule (and nothing else), then a plain one that passes.
GOOD = "The film was released in 1931. It was shown in three cities.\n\nCritics praised the score."
FAILING = {
    "symbol_ratio": "Wonderful #cinema #history #classics...\nMore #reviews #tonight #online... today.",
    "mean_word_len": "Incomprehensibilities notwithstanding, internationalization characteristically overwhelms.",
    "duplicate_lines": "Buy now.\nBuy now.\nBuy now.\nBuy now.\nA real sentence here.",
    "punctuated_lines": "Home\nAbout us\nContact\nPrivacy policy\nTerms of service\nCareers\nPress kit\nSitemap\nLogin\nSign up\nHelp",
}


@pytest.mark.parametrize("rule", sorted(FAILING))
def test_each_quality_rule_names_itself(rule):
    config = QualityConfig(enabled=True)
    assert failed_rule(FAILING[rule], config) == rule
    assert failed_rule(FAILING[rule], config.model_copy(update={"rules": [r for r in config.rules if r != rule]})) is None
    assert failed_rule(GOOD, config) is None


def test_quality_rules_count_their_removals_in_the_stream(tmp_path):
    docs = [{"id": f"g{i}", "text": f"{GOOD} Copy {i}."} for i in range(3)]
    docs += [{"id": rule, "text": text} for rule, text in FAILING.items()]
    result, kept = run(tmp_path, docs, quality_rules=QualityConfig(enabled=True))
    assert {rule: result["removed"][rule] for rule in FAILING} == dict.fromkeys(FAILING, 1)
    assert kept["doc_id"].tolist() == ["g0", "g1", "g2"]
    off, _ = run(tmp_path, docs, quality_rules=QualityConfig(enabled=False))
    assert not set(FAILING) & set(off["removed"]) and off["rows"] == len(docs)
