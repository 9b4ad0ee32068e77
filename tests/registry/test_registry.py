"""Audited alias moves against a real registry: a fresh sqlite store and a real `mlflow server`.

Every test runs on both backends (the `backend` fixture); versions are real registered model
versions tagged as the register stage tags them.
"""

from __future__ import annotations

import json
import re

import mlflow
import pytest

from components.shared import audit_ledger, registry
from components.shared.errors import UserError


def holders(name: str) -> dict:
    return registry.alias_holders(name)


def moves(name: str) -> list[tuple]:
    return [(r["action"], r["from_version"], r["to_version"]) for r in registry.history(name) if r["state"] != "failed"]


def test_promote_refuses_a_failed_gate_and_says_why(make_version, model_name):
    version = make_version(gate="failed", summary="accuracy -0.031 [-0.05, -0.01] vs champion 1")
    with pytest.raises(UserError) as err:
        registry.promote(model_name, version)
    text = str(err.value)
    assert f"{model_name} version {version} cannot become @champion: its gate failed" in text
    assert "accuracy -0.031 [-0.05, -0.01] vs champion 1" in text and "--force --reason" in text
    assert "champion" not in holders(model_name) and registry.history(model_name) == []


def test_promote_refuses_a_version_without_gate_result(make_version, model_name):
    version = make_version(gate=None)
    with pytest.raises(UserError, match=r"has no gate result \(tag lmforge.gate\)"):
        registry.promote(model_name, version)
    assert holders(model_name) == {} and registry.history(model_name) == []


def test_force_needs_a_reason(make_version, model_name):
    version = make_version(gate="failed")
    for reason in (None, "", "   "):
        with pytest.raises(UserError, match=r'^--force needs --reason "why"'):
            registry.promote(model_name, version, force=True, reason=reason)
    assert holders(model_name) == {} and registry.history(model_name) == []


def test_forced_promotion_is_recorded_as_forced(make_version, model_name):
    version = make_version(gate="failed")
    record = registry.promote(model_name, version, force=True, reason="hotfix for the launch demo")
    assert holders(model_name) == {"champion": version}
    [entry] = registry.history(model_name)
    assert entry["forced"] is True and entry["gate"] == "failed" and entry["reason"] == "hotfix for the launch demo"
    assert entry["state"] == "done" and entry["seq"] == record["seq"] == 1


def test_promotion_record_says_who_when_from_to_why_and_gate(make_version, model_name, monkeypatch):
    first, second = make_version(), make_version(summary="macro_f1 +0.04 [0.01, 0.07]")
    registry.promote(model_name, first)
    monkeypatch.setenv("LMFORGE_ACTOR", "alice@laptop")
    registry.promote(model_name, second)
    one, two = registry.history(model_name)
    assert (one["seq"], one["from_version"], one["to_version"], one["actor"]) == (1, None, first, "tester@ci")
    assert (two["seq"], two["from_version"], two["to_version"], two["actor"]) == (2, first, second, "alice@laptop")
    assert two["gate"] == "passed" and two["forced"] is False and two["reason"] == "gate passed: macro_f1 +0.04 [0.01, 0.07]"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", two["time"]) and one["time"] <= two["time"]
    assert registry.champion(model_name) == second


def test_promoting_the_champion_again_moves_and_records_nothing(make_version, model_name):
    version = make_version()
    assert registry.promote(model_name, version)["moved"] is True
    again = registry.promote(model_name, version)
    assert again["moved"] is False and again["seq"] is None
    assert len(registry.history(model_name)) == 1


def test_rollback_walks_back_through_the_holders_then_stops(make_version, model_name):
    v1, v2, v3 = make_version(), make_version(gate="failed"), make_version()
    registry.promote(model_name, v1)
    registry.promote(model_name, v2, force=True, reason="try the new tokenizer")
    registry.promote(model_name, v3)
    back = registry.rollback(model_name, reason="v3 misbehaves in production")
    assert (back["from_version"], back["to_version"], back["action"], back["gate"]) == (v3, v2, "rollback", "failed")
    assert holders(model_name)["champion"] == v2
    registry.rollback(model_name)
    assert holders(model_name)["champion"] == v1
    with pytest.raises(UserError, match=rf"@champion \(version {v1}\) has no previous holder to roll back to"):
        registry.rollback(model_name)
    assert moves(model_name) == [("promote", None, v1), ("promote", v1, v2), ("promote", v2, v3), ("rollback", v3, v2), ("rollback", v2, v1)]
    assert [r["seq"] for r in registry.history(model_name)] == [1, 2, 3, 4, 5]
    assert registry.history(model_name)[3]["reason"] == "v3 misbehaves in production"


def test_rollback_after_a_new_promotion_returns_to_the_holder_before_it(make_version, model_name):
    v1, v2, v3 = make_version(), make_version(), make_version()
    registry.promote(model_name, v1)
    registry.promote(model_name, v2)
    registry.rollback(model_name)  # back to v1; v2 is off the chain
    registry.promote(model_name, v3)
    assert registry.rollback(model_name)["to_version"] == v1
    assert registry.holder_chain(model_name, "champion") == [v1]


def test_rollback_without_previous_holder_or_without_champion_is_an_error(make_version, model_name):
    version = make_version()
    with pytest.raises(UserError, match=f"{model_name} has no @champion to roll back"):
        registry.rollback(model_name)
    registry.promote(model_name, version)
    with pytest.raises(UserError, match="has no previous holder to roll back to: see lmforge models history"):
        registry.rollback(model_name)
    assert holders(model_name) == {"champion": version} and len(registry.history(model_name)) == 1


def test_rollback_refuses_an_alias_moved_outside_lmforge(make_version, backend, model_name):
    v1, v2, v3 = make_version(), make_version(), make_version()
    registry.promote(model_name, v1)
    registry.promote(model_name, v2)
    mlflow.MlflowClient(backend).set_registered_model_alias(model_name, "champion", v3)  # off record
    with pytest.raises(UserError, match=rf"points at version {v3} but its recorded history ends at version {v2}"):
        registry.rollback(model_name)
    assert holders(model_name)["champion"] == v3


def test_challenger_moves_are_recorded_and_rolled_back_on_their_own(make_version, model_name):
    v1, v2 = make_version(), make_version()
    registry.move_alias(model_name, "challenger", v1, reason="registered by lmforge-tiny-1", gate="passed", action="register")
    registry.move_alias(model_name, "challenger", v2, reason="registered by lmforge-tiny-2", gate="failed", action="register")
    registry.promote(model_name, v1)
    assert registry.rollback(model_name, alias="challenger")["to_version"] == v1
    assert holders(model_name) == {"challenger": v1, "champion": v1}
    assert [(r["alias"], r["action"]) for r in registry.history(model_name)] == [
        ("challenger", "register"), ("challenger", "register"), ("champion", "promote"), ("challenger", "rollback")
    ]  # fmt: skip


def test_unknown_model_or_version_names_it_and_how_to_list(make_version, model_name):
    make_version()
    with pytest.raises(UserError, match=f"{model_name} has no version 42: list its versions with lmforge models list {model_name}"):
        registry.promote(model_name, 42)
    with pytest.raises(UserError, match="registered model 'no-such-model' not found at .*: list the models with lmforge models list"):
        registry.promote("no-such-model", 1)
    with pytest.raises(UserError, match="'abc' is not a model version number"):
        registry.promote(model_name, "abc")
    with pytest.raises(UserError, match="registered model 'no-such-model' not found"):
        registry.history("no-such-model")
    with pytest.raises(UserError, match=f"{model_name} has no version 42"):
        registry.move_alias(model_name, "challenger", 42, reason="x", gate="passed")
    assert registry.history(model_name) == [], "nothing recorded for a version that does not exist"


def test_list_shows_versions_aliases_gate_and_metrics(make_version, model_name):
    v1 = make_version(accuracy=0.7283, macro_f1=0.7277, baseline_majority_accuracy=0.5079, baseline_tfidf_accuracy=0.7731, perplexity=867.35)
    v2 = make_version(gate="failed", accuracy=0.61, data_rev="fedcba9876543210")
    registry.promote(model_name, v1)
    registry.move_alias(model_name, "challenger", v2, reason="registered", gate="failed", action="register")
    rows = [r for r in registry.list_versions() if r["model"] == model_name]
    assert rows == registry.list_versions(model_name)
    one, two = rows
    assert (one["version"], one["aliases"], one["gate"], one["accuracy"], one["macro_f1"]) == (v1, ["champion"], "passed", 0.7283, 0.7277)
    assert (one["baseline_majority_accuracy"], one["perplexity"], one["data_rev"]) == (0.5079, 867.35, "01234567")
    assert (one["baseline_tfidf_accuracy"], two["baseline_tfidf_accuracy"]) == (0.7731, None)  # v2 predates the tag
    assert (two["version"], two["aliases"], two["gate"], two["accuracy"], two["macro_f1"], two["data_rev"]) == (v2, ["challenger"], "failed", 0.61, None, "fedcba98")
    assert one["run_name"].startswith("lmforge-tiny-") and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", one["created"])


def test_records_cannot_be_rewritten_through_mlflow_params(make_version, backend, model_name):
    registry.promote(model_name, make_version())
    client = mlflow.MlflowClient(backend)
    ledger = audit_ledger.ledger_run_id(client, model_name, create=False)
    with pytest.raises(mlflow.exceptions.MlflowException, match="[Cc]hanging param values is not allowed"):
        client.log_param(ledger, audit_ledger.record_key(1), '{"seq": 1, "to_version": "99"}')
    assert registry.history(model_name)[0]["to_version"] == json.loads(client.get_run(ledger).data.params["r.000001"])["to_version"]


def test_alias_that_cannot_be_set_moves_nothing_and_says_so(make_version, model_name, monkeypatch):
    v1, v2 = make_version(), make_version()
    registry.promote(model_name, v1)

    def refuse(self, *args):  # the registry refusing mid-move (a fault injected into the real client)
        raise mlflow.exceptions.MlflowException("registry refused the alias")

    with monkeypatch.context() as patch, pytest.raises(UserError, match=r"failed \(registry refused the alias\)"):
        patch.setattr(mlflow.MlflowClient, "set_registered_model_alias", refuse)
        registry.promote(model_name, v2)
    assert holders(model_name) == {"champion": v1} and moves(model_name) == [("promote", None, v1)]
    assert [(r["seq"], r["state"]) for r in registry.history(model_name)] == [(1, "done"), (2, "failed")], "the attempt is kept, as failed: no gap"


def test_record_that_cannot_be_confirmed_puts_the_alias_back(make_version, model_name, monkeypatch):
    v1, v2 = make_version(), make_version()
    registry.promote(model_name, v1)
    real = mlflow.MlflowClient.log_param

    def fail_to_confirm(self, run_id, key, value, *args, **kwargs):  # tracking fails after the alias moved
        if key.startswith("s.") and value == "done":
            raise mlflow.exceptions.MlflowException("tracking write failed")
        return real(self, run_id, key, value, *args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(UserError, match=r"failed \(tracking write failed\)"):
        patch.setattr(mlflow.MlflowClient, "log_param", fail_to_confirm)
        registry.promote(model_name, v2)
    assert holders(model_name) == {"champion": v1}, "the alias is put back"
    assert moves(model_name) == [("promote", None, v1)], "the aborted move is not a move in the history"
    assert registry.promote(model_name, v2)["seq"] == 3, "sequence numbers never repeat, even after an aborted move"
    assert registry.audit(model_name)[1] == [], "an aborted move is no integrity problem"


def test_deleted_audit_experiment_stops_the_move_before_it_happens(make_version, backend, model_name):
    v1, v2 = make_version(), make_version()
    registry.promote(model_name, v1)
    client = mlflow.MlflowClient(backend)
    exp = client.get_experiment_by_name(registry.AUDIT_EXPERIMENT)
    client.delete_experiment(exp.experiment_id)
    try:
        with pytest.raises(UserError, match=rf"is deleted \(its records are intact\): restore it with mlflow experiments restore --experiment-id {exp.experiment_id}; no alias was moved"):
            registry.promote(model_name, v2)
        assert holders(model_name) == {"champion": v1}
    finally:  # the server's store is shared by the session
        client.restore_experiment(exp.experiment_id)


def test_move_alias_checks_its_arguments(make_version, model_name):
    version = make_version()
    with pytest.raises(UserError, match="gate result 'maybe' is not one of passed, failed, none"):
        registry.move_alias(model_name, "champion", version, reason="x", gate="maybe")
    with pytest.raises(UserError, match="'bad alias' is not an alias name"):
        registry.move_alias(model_name, "bad alias", version, reason="x", gate="passed")
    with pytest.raises(UserError, match="keep it under 1000"):
        registry.move_alias(model_name, "champion", version, reason="x" * 1001, gate="passed")
    assert holders(model_name) == {}
