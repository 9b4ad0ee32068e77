"""The promotion gate: its statistics against scikit-learn, its rules, and its report."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import f1_score

from components.evaluate.gate import GateConfig, choose_baseline, compare, decide, metric_values
from components.shared import artifacts
from components.shared.errors import UserError

RNG = np.random.default_rng(0)


def test_vectorised_scores_equal_scikit_learn_row_by_row():
    y = RNG.integers(0, 3, size=(5, 200))
    pred = np.where(RNG.random((5, 200)) < 0.6, y, RNG.integers(0, 3, size=(5, 200)))
    pred[4] = 0  # a row predicting one class only: other classes score F1 0, as sklearn's zero_division=0
    scores = metric_values(y, pred, 3)
    for i in range(5):
        assert scores["accuracy"][i] == pytest.approx((y[i] == pred[i]).mean())
        assert scores["macro_f1"][i] == pytest.approx(f1_score(y[i], pred[i], labels=[0, 1, 2], average="macro", zero_division=0))


def test_interval_holds_the_difference_and_is_repeatable():
    y = RNG.integers(0, 2, 500)
    better = np.where(RNG.random(500) < 0.85, y, 1 - y)
    worse = np.where(RNG.random(500) < 0.70, y, 1 - y)
    config = GateConfig()
    out = compare(y, better, worse, 2, config)
    acc = out["accuracy"]
    assert acc["diff"] == pytest.approx((better == y).mean() - (worse == y).mean())
    assert acc["low"] < acc["diff"] < acc["high"] and acc["low"] > 0  # a 15-point gap on 500 is clear
    assert compare(y, better, worse, 2, config) == out  # seeded resamples: same models, same report
    same = compare(y, better, better, 2, config)["accuracy"]
    assert same["diff"] == same["low"] == same["high"] == 0


def comparison(acc: float, f1: float) -> dict:
    return {"accuracy": {"diff": acc, "low": acc - 0.02, "high": acc + 0.02}, "macro_f1": {"diff": f1, "low": f1 - 0.02, "high": f1 + 0.02}}


def test_rules_improvement_and_tolerance():
    config = GateConfig(min_improvement=0.005, tolerance={"accuracy": 0.01, "macro_f1": 0.01})
    champion = {"version": "3"}
    assert decide(config, champion, comparison(0.01, -0.005), None)["passed"]
    small = decide(config, champion, comparison(0.001, 0.0), None)
    assert not small["passed"] and "less than the required +0.0050" in small["reasons"][0]
    regress = decide(config, champion, comparison(0.02, -0.03), None)
    assert not regress["passed"] and regress["reasons"] == ["macro_f1 fell 0.0300 below the champion (tolerance 0.0100)"]
    assert "against champion version 3" in regress["summary"] and "[" in regress["summary"]  # intervals in the one-liner


def scored(acc_new: float, **others: float) -> dict:
    """gate.json-style comparisons of one model against baselines of the given test accuracies."""
    return {f"vs_{k}": {"accuracy": {"new": acc_new, "other": v, "diff": acc_new - v, "low": 0, "high": 0}} for k, v in others.items()}


def test_without_a_champion_the_majority_baseline_decides():
    config = GateConfig(min_gain_over_baseline=0.05)
    assert config.baseline == "majority"  # the default: presets behave as before
    assert decide(config, None, None, choose_baseline(config, scored(0.56, majority=0.5, tfidf=0.9)))["passed"]
    verdict = decide(config, None, None, choose_baseline(config, scored(0.51, majority=0.5, tfidf=0.9)))
    assert not verdict["passed"] and verdict["summary"] == "gate failed no champion yet: judged against the majority baseline: accuracy +0.0100 over the majority baseline"


def test_tfidf_rule_fails_a_model_worse_than_tfidf_and_says_so():
    comparisons = scored(0.80, majority=0.5, tfidf=0.85, control=0.7)
    assert decide(GateConfig(), None, None, choose_baseline(GateConfig(), comparisons))["passed"]  # +0.30 over the majority
    config = GateConfig(baseline="tfidf", min_gain_over_baseline=0.0)
    verdict = decide(config, None, None, choose_baseline(config, comparisons))
    assert not verdict["passed"] and verdict["reasons"] == ["accuracy beats the TF-IDF + LR baseline by -0.0500, less than the required +0.0000"]
    assert "judged against the TF-IDF + LR baseline" in verdict["summary"]


@pytest.mark.parametrize(("accuracies", "expected"), [
    ({"majority": 0.5, "tfidf": 0.85, "control": 0.7}, "tfidf"),
    ({"majority": 0.5, "tfidf": 0.65, "control": 0.7}, "control"),
    ({"majority": 0.9, "tfidf": 0.85, "control": 0.7}, "majority"),  # a skewed test split
    ({"majority": 0.5, "tfidf": 0.6}, "tfidf"),  # no control trained
])  # fmt: skip
def test_strongest_is_the_baseline_with_the_highest_test_accuracy(accuracies, expected):
    config = GateConfig(baseline="strongest")
    chosen = choose_baseline(config, scored(0.8, **accuracies))
    assert chosen["key"] == expected and chosen["accuracy"] == accuracies[expected] and chosen["gain"] == pytest.approx(0.8 - accuracies[expected])
    verdict = decide(config, None, None, chosen)
    assert verdict["passed"] == (0.8 - accuracies[expected] >= config.min_gain_over_baseline)
    assert f"judged against the strongest baseline, the {chosen['title']} (test accuracy {accuracies[expected]:.4f})" in verdict["summary"]


def test_control_baseline_without_a_control_is_refused():
    with pytest.raises(UserError, match="set finetune.control: true"):
        choose_baseline(GateConfig(baseline="control"), scored(0.8, majority=0.5, tfidf=0.6))
    with pytest.raises(ValidationError):
        GateConfig(baseline="champion")


def test_config_catches_a_control_baseline_without_a_control():
    from pipelines.config import load_config

    with pytest.raises(UserError, match="evaluate.gate.baseline is control but finetune.control is false"):
        load_config("tiny", ["evaluate.gate.baseline=control", "finetune.control=false"])
    assert load_config("tiny", ["evaluate.gate.baseline=strongest", "finetune.control=false"]).evaluate.gate.baseline == "strongest"


def test_tolerance_for_an_ungated_metric_is_refused():
    with pytest.raises(ValidationError, match="not in evaluate.gate.metrics"):
        GateConfig(metrics=["accuracy"], tolerance={"macro_f1": 0.01})


def test_evaluate_writes_the_gate_with_the_random_init_control(eval_dir):
    gate = artifacts.read_json(eval_dir / artifacts.GATE_REPORT)
    report = artifacts.read_json(eval_dir / artifacts.EVAL_REPORT)
    assert gate["champion"] is None and gate["vs_champion"] is None  # no registry given: baseline only
    control = gate["vs_control"]["accuracy"]
    assert control["new"] == pytest.approx(report["accuracy"]) and report["pretraining_gain"] == pytest.approx(control["diff"])
    assert gate["passed"] == bool(report["gate_passed"]) == (report["gain_over_majority"] >= gate["rules"]["min_gain_over_baseline"])
    text = (eval_dir / artifacts.GATE_MD).read_text()
    assert "vs random-init control" in text and "vs majority baseline" in text and f"]({artifacts.GATE_PNG})" in text
    assert "vs TF-IDF + LR" in text and "evaluate.gate.baseline: majority" in text
    assert gate["baseline"]["key"] == "majority" and "judged against the majority baseline" in gate["summary"]
    assert (eval_dir / artifacts.GATE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gate_compares_with_tfidf_with_an_interval(eval_dir):
    gate = artifacts.read_json(eval_dir / artifacts.GATE_REPORT)
    report = artifacts.read_json(eval_dir / artifacts.EVAL_REPORT)
    for m in ("accuracy", "macro_f1"):
        v = gate["vs_tfidf"][m]
        assert v["low"] <= v["diff"] <= v["high"] and v["new"] == pytest.approx(report[m])
        assert v["other"] == pytest.approx(report[f"baseline_tfidf_{m}"])
    assert report["gain_over_tfidf"] == pytest.approx(gate["vs_tfidf"]["accuracy"]["diff"])


def test_evaluate_judges_a_first_model_against_the_strongest_baseline(cleaned_dir, mlm_dir, classifier_dir, tmp_path):
    from components.evaluate.evaluate import EvaluateConfig, evaluate

    config = EvaluateConfig(threads=1, gate=GateConfig(baseline="strongest", min_gain_over_baseline=0.0))
    metrics = evaluate(cleaned_dir, mlm_dir, classifier_dir, tmp_path / "eval", config)
    gate = artifacts.read_json(tmp_path / "eval" / artifacts.GATE_REPORT)
    accuracies = {k: gate[f"vs_{k}"]["accuracy"]["other"] for k in ("majority", "tfidf", "control")}
    assert gate["baseline"]["key"] == max(accuracies, key=accuracies.get)
    assert "judged against the strongest baseline" in gate["summary"]
    gain = metrics["eval/accuracy"] - max(accuracies.values())
    assert gate["passed"] == (gain >= 0) and bool(metrics["eval/gate_passed"]) == gate["passed"]
    assert "eval/baseline_tfidf_accuracy" in metrics and not any("params" in k for k in metrics)  # the chosen settings are no metric


def test_gating_one_metric_keeps_only_its_default_tolerance():
    assert GateConfig(metrics=["accuracy"]).tolerance == {"accuracy": 0.01}


def test_the_champion_is_scored_through_the_new_models_prediction_path(cleaned_dir, classifier_dir):
    # The champion is tokenized with its own tokenizer, cut as its training texts were (the length
    # and truncation finetune records in config.json), then takes the task's `predict`, as the new
    # model does: a champion that is this very model predicts exactly what it does.
    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from components.evaluate.gate import predict_registered
    from components.shared.inputs import INPUTS_CONFIG_KEY, encode, inputs_of
    from components.tasks.classification import predict

    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(classifier_dir), AutoTokenizer.from_pretrained(classifier_dir)
    assert getattr(model.config, INPUTS_CONFIG_KEY) == inputs_of(artifacts.read_json(cleaned_dir / artifacts.CLEAN_REPORT)["tokens"])
    test = pd.read_parquet(cleaned_dir / artifacts.LABELED).query("split == 'test'")
    assert len(test) >= 10
    assert encode(tokenizer, test["text"].tolist(), getattr(model.config, INPUTS_CONFIG_KEY)) == [list(ids) for ids in test["input_ids"]]
    new, _ = predict(model, test, model.config.pad_token_id, 8)
    assert np.array_equal(predict_registered(model, tokenizer, test["text"].tolist(), 8), new)
    assert len(predict_registered(model, tokenizer, [], 8)) == 0


def test_a_head_tail_champion_is_fed_head_and_tail_not_the_tokenizers_head_cut(cleaned_dir, classifier_dir):
    # A champion whose config.json records head_tail at 10 tokens gets each long text's end (the
    # tokenizer's own truncation would keep its start); one without the record keeps the old cut.
    from types import SimpleNamespace

    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from components.evaluate.gate import predict_registered
    from components.shared.inputs import INPUTS_CONFIG_KEY, cut
    from components.tasks import classification

    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(classifier_dir), AutoTokenizer.from_pretrained(classifier_dir)
    texts = pd.read_parquet(cleaned_dir / artifacts.LABELED)["text"].tolist()[:40]
    whole = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert 0 < sum(len(w) > 8 for w in whole) < len(texts)
    fed = []
    spy = SimpleNamespace(predict=lambda m, rows, pad, bs: fed.append([list(i) for i in rows["input_ids"]]) or classification.predict(m, rows, pad, bs))
    setattr(model.config, INPUTS_CONFIG_KEY, {"max_seq_len": 10, "truncation": "head_tail"})
    predict_registered(model, tokenizer, texts, 8, spy)
    assert fed[0] == [[tokenizer.cls_token_id, *cut(w, 8, "head_tail"), tokenizer.sep_token_id] for w in whole]
    assert all(ids[-2] == w[-1] and ids[1] == w[0] for ids, w in zip(fed[0], whole, strict=True))  # both ends kept
    delattr(model.config, INPUTS_CONFIG_KEY)
    predict_registered(model, tokenizer, texts, 8, spy)
    assert fed[1] == [tokenizer(t)["input_ids"] for t in texts]  # no record: the whole text (under max_position)
