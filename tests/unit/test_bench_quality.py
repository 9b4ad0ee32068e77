"""bench/quality.py: its pure helpers (overrides, cache keys, the table) and one tiny real run."""

from __future__ import annotations

import json

import pytest
from tiny_data import CORPUS_FILE, LABELED_FILE

from bench import quality, quality_report
from bench.quality_cache import Cache, key
from components.shared.errors import UserError
from pipelines.config import load_config


def test_parse_budgets_and_select_refuse_bad_input_with_one_line():
    assert quality.parse_budgets("600, 0,150,600") == [0, 150, 600]
    for bad in ("a,1", "-5", ""):
        with pytest.raises(UserError, match="--budgets"):
            quality.parse_budgets(bad)
    assert quality.select(None, ["a", "b"], "row") == ["a", "b"]
    assert quality.select("b", ["a", "b"], "row") == ["b"]
    with pytest.raises(UserError, match="unknown row 'c': use one or more of a, b"):
        quality.select("a,c", ["a", "b"], "row")


def test_cell_overrides_become_the_typed_config(tmp_path):
    spec = quality.Spec("bbc-news", tmp_path / "x: y.csv", ("business", "entertainment", "politics", "sport", "tech"), ("clean_tokenize.max_chars=30000", "validate.max_chars=30000"))
    row = ["pretrain.learning_rate=3e-4", "clean_tokenize.max_chars=20000"]
    config = load_config("demo", quality.cell_overrides(spec, tmp_path / "corpus.jsonl", row, 150, threads=1))
    assert config.ingest.source == "path" and config.ingest.labeled_path == str(tmp_path / "x: y.csv")  # quoted: ': ' is YAML
    assert config.finetune.label_names == list(spec.label_names) and config.validate_.labels == [0, 1, 2, 3, 4]
    assert config.pretrain.max_steps == 150 and config.pretrain.learning_rate == 3e-4
    assert config.clean_tokenize.max_chars == 20000  # the row comes after the set's own needs
    assert config.finetune.threads == config.pretrain.threads == config.evaluate.threads == 1
    # Budget 0 leaves the preset's steps alone (the untrained encoder is used instead).
    assert load_config("demo", quality.cell_overrides(spec, tmp_path / "c.jsonl", [], 0)).pretrain.max_steps == load_config("demo").pretrain.max_steps


def test_cache_keys_change_only_with_what_determines_the_stage(tmp_path):
    def sections(*sets):
        config = load_config("demo", list(sets))
        return {s: config.section(s) for s in ("clean_tokenize", "pretrain", "finetune")}

    base, longer, lr = sections(), sections("pretrain.max_steps=600"), sections("finetune.learning_rates=[1e-4]")
    assert key("clean_tokenize", base["clean_tokenize"], {"raw": "r"}) == key("clean_tokenize", longer["clean_tokenize"], {"raw": "r"})
    assert key("pretrain", base["pretrain"], {"corpus": "c"}) != key("pretrain", longer["pretrain"], {"corpus": "c"})
    assert key("pretrain", base["pretrain"], {"corpus": "c"}) == key("pretrain", lr["pretrain"], {"corpus": "c"})
    assert key("finetune", base["finetune"], {"encoder": "e"}) != key("finetune", lr["finetune"], {"encoder": "e"})
    assert key("finetune", base["finetune"], {"encoder": "e"}) != key("finetune", base["finetune"], {"encoder": "f"})


def cell(vs_tfidf=None, tfidf=None) -> dict:
    vs_control = {"accuracy": {"new": 0.72, "other": 0.71, "diff": 0.01, "low": -0.005, "high": 0.025}, "macro_f1": {"new": 0.70, "other": 0.69, "diff": 0.01, "low": -0.01, "high": 0.03}}
    result = {
        "accuracy": 0.72,
        "macro_f1": 0.70,
        "control_accuracy": 0.71,
        "control_macro_f1": 0.69,
        "tfidf_accuracy": tfidf,
        "tfidf_macro_f1": tfidf,
        "majority_accuracy": 0.5,
        "vs_control": vs_control,
        "vs_tfidf": vs_tfidf,
        "pretrain_tokens": 2_457_600,
        "wall_s": 12.3,
        "stages": {"pretrain": {"cached": True, "seconds": 0.0}},
    }
    return {"dataset": "demo", "row": "demo preset", "budget": 600, "overrides": [], "result": result}


def test_table_shows_intervals_and_dashes_for_what_evaluate_did_not_report():
    line = quality_report.table([cell()]).splitlines()[2]
    assert line == ("| demo | demo preset | 600 | 2.46M | - | - | 0.7200 | 0.7000 | 0.7100 | 0.6900 | - | - | 0.5000 | +0.0100 [-0.0050, +0.0250] | - | 12 |")
    with_tfidf = cell({"accuracy": {"new": 0.72, "other": 0.75, "diff": -0.03, "low": -0.05, "high": -0.01}}, tfidf=0.75)
    assert "| 0.7500 | 0.7500 | 0.5000 | +0.0100 [-0.0050, +0.0250] | -0.0300 [-0.0500, -0.0100] |" in quality_report.table([with_tfidf])
    assert quality_report.tokens(0) == "0" and quality_report.tokens(12_800) == "12.8k"
    # a cached stage from before the cache kept its run time: this invocation's wall time, as before
    stale = cell()
    stale["result"] |= {"compute_s": None}
    assert quality_report.table([stale]).splitlines()[2].endswith("| 12 |")


def test_quick_run_on_the_tiny_preset_reuses_its_stages(text_files, tmp_path):
    spec = quality.Spec("tiny-set", text_files / LABELED_FILE)
    corpus, cache = text_files / CORPUS_FILE, Cache(tmp_path / "cache")
    cells = [quality.run_cell(cache, spec, "tiny", ("demo preset", []), budget, corpus, threads=1) for budget in (0, 10)]
    untrained, trained = (c.result for c in cells)
    assert untrained["stages"]["init"]["cached"] is False and "pretrain" not in untrained["stages"]
    assert trained["stages"]["clean_tokenize"]["cached"] is True  # one clean_tokenize serves both budgets
    assert trained["pretrain_tokens"] == 10 * 16 * 64  # steps x tiny batch x tiny block, all real tokens
    for r in (untrained, trained):
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["control_accuracy"] <= 1 and r["n_test"] > 0
        assert 0 <= r["val_accuracy"] <= 1 and 0 <= r["control_val_accuracy"] <= 1  # what a row is chosen on
        c = r["vs_control"]["accuracy"]
        assert c["low"] <= c["diff"] <= c["high"] and c["other"] == r["control_accuracy"]
    again = quality.run_cell(cache, spec, "tiny", ("demo preset", []), 10, corpus, threads=1)
    assert all(s["cached"] for s in again.result["stages"].values())
    assert again.result["accuracy"] == trained["accuracy"]
    # a cell read from the cache reports what its stages took when they ran, not the moment it took to read them
    assert trained["compute_s"] > 0 and again.result["compute_s"] == trained["compute_s"] > again.result["wall_s"]
    assert quality_report.cell_seconds(again.result) == f"{trained['compute_s']:.0f} (cached)"
    assert quality_report.cell_seconds(trained) == f"{trained['compute_s']:.0f}"

    result = {"environment": quality.environment(1, "tiny") | {"wall_s": 1.0}, "budgets": [0, 10], "rows": {"demo preset": []}, "cells": [vars(c) for c in cells]}
    quality_report.write(result, tmp_path / "out" / "q")
    assert json.loads((tmp_path / "out" / "q.json").read_text())["cells"][1]["budget"] == 10
    assert (tmp_path / "out" / "q.png").stat().st_size > 1000
    assert f"| tiny-set | demo preset | 10 | 10.2k | {trained['val_accuracy']:.4f} | {trained['control_val_accuracy']:.4f} |" in (tmp_path / "out" / "q.md").read_text()


def test_main_refuses_a_bad_budget_list(capsys):
    assert quality.main(["--budgets", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: --budgets 'x' is not a comma-separated list")


def test_a_bad_row_fails_before_any_cell_runs(tmp_path):
    spec = quality.Spec("demo", tmp_path / "labeled.csv")
    plan = [(spec, ("demo preset", []), 0), (spec, ("typo", ["pretrain.max_stepz=5"]), 600)]
    with pytest.raises(UserError, match="row 'typo' on demo: unknown config key 'pretrain.max_stepz'"):
        quality.check_configs(plan, "demo", tmp_path / "corpus.jsonl", None)


def test_every_row_validates_and_the_nsp_row_turns_nsp_on(tmp_path):
    spec = quality.Spec("demo", tmp_path / "labeled.csv")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "enwiki.jsonl").write_text('{"text": "x"}\n')
    rows = [(name, quality.resolve_corpora(sets, tmp_path)) for name, sets in quality.ROWS]
    quality.check_configs([(spec, row, budget) for row in rows for budget in quality.BUDGETS], "demo", tmp_path / "corpus.jsonl", 1)
    rows = dict(quality.ROWS)
    nsp = load_config("demo", quality.cell_overrides(spec, tmp_path / "corpus.jsonl", rows["next-sentence prediction"], 600))
    plain = load_config("demo", quality.cell_overrides(spec, tmp_path / "corpus.jsonl", rows["demo preset"], 600))
    assert nsp.pretrain.nsp and not plain.pretrain.nsp
    assert nsp.section("clean_tokenize") == plain.section("clean_tokenize")  # the same blocks: one clean_tokenize serves both


def test_the_nsp_row_runs_on_the_tiny_preset(text_files, tmp_path):
    spec = quality.Spec("tiny-set", text_files / LABELED_FILE)
    row = ("next-sentence prediction", dict(quality.ROWS)["next-sentence prediction"])
    result = quality.run_cell(Cache(tmp_path / "cache"), spec, "tiny", row, 10, text_files / CORPUS_FILE, threads=1).result
    assert result["stages"]["pretrain"]["cached"] is False and 0 <= result["accuracy"] <= 1 and result["perplexity"] > 1


def test_help_lists_every_row_even_those_named_with_a_percent_sign(capsys):
    """`--help` crashed in argparse's %-formatting on the row named 'vocab 4000 mask 30%'."""
    from bench import quality

    with pytest.raises(SystemExit) as exit_:
        quality.main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text (at spaces and hyphens)
    assert "demo preset" in out and "vocab 4000 mask 30% lr 2e-3" in out


def test_the_preset_corpus_is_the_default_and_a_row_can_name_another_file_of_the_data(tmp_path):
    (tmp_path / "corpus").mkdir()
    for name in ("imdb_reviews.jsonl", "enwiki.jsonl"):
        (tmp_path / "corpus" / name).write_text('{"text": "x"}\n')
    assert quality.preset_corpus("demo", tmp_path) == tmp_path / "corpus" / "imdb_reviews.jsonl"
    assert quality.preset_corpus("tiny", tmp_path) == tmp_path / "corpus" / "enwiki.jsonl"
    rows = dict(quality.ROWS)
    sets = quality.resolve_corpora(rows["wikipedia corpus"], tmp_path)
    assert sets == [f'ingest.corpus_path="{tmp_path / "corpus" / "enwiki.jsonl"}"', "pretrain.embedding_init=random"]
    assert quality.resolve_corpora(rows["demo preset"], tmp_path) == []
    config = load_config("demo", quality.cell_overrides(quality.Spec("demo", tmp_path / "l.csv"), quality.preset_corpus("demo", tmp_path), sets, 600))
    assert config.ingest.corpus_path == str(tmp_path / "corpus" / "enwiki.jsonl")  # the row's corpus wins over the preset's
    assert config.pretrain.embedding_init == "random" and load_config("demo").pretrain.embedding_init == "ppmi"
    (tmp_path / "corpus" / "enwiki.jsonl").unlink()
    with pytest.raises(UserError, match=r"the corpus corpus/enwiki.jsonl is not in .*: run `make data` first"):
        quality.resolve_corpora(rows["wikipedia corpus + ppmi"], tmp_path)
