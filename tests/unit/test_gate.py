"""The promotion gate: its statistics against scikit-learn, its rules, and its report."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import f1_score

from components.evaluate.gate import GateConfig, compare, decide, metric_values
from components.shared import artifacts

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
    assert decide(config, champion, comparison(0.01, -0.005), 0.2)["passed"]
    small = decide(config, champion, comparison(0.001, 0.0), 0.2)
    assert not small["passed"] and "less than the required +0.0050" in small["reasons"][0]
    regress = decide(config, champion, comparison(0.02, -0.03), 0.2)
    assert not regress["passed"] and regress["reasons"] == ["macro_f1 fell 0.0300 below the champion (tolerance 0.0100)"]
    assert "against champion version 3" in regress["summary"] and "[" in regress["summary"]  # intervals in the one-liner


def test_without_a_champion_the_majority_baseline_decides():
    config = GateConfig(min_gain_over_baseline=0.05)
    assert decide(config, None, None, 0.06)["passed"]
    verdict = decide(config, None, None, 0.01)
    assert not verdict["passed"] and "no champion yet" in verdict["summary"]


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
    assert (eval_dir / artifacts.GATE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gating_one_metric_keeps_only_its_default_tolerance():
    assert GateConfig(metrics=["accuracy"]).tolerance == {"accuracy": 0.01}
