"""Strict config types: a yes/no value, NaN or a list preset is one line naming the key, never a run.

`--set pretrain.max_steps=true` used to train one step (pydantic reads True as 1) and register
the model; a list-YAML preset ended in an AttributeError traceback.
"""

from __future__ import annotations

import json

import pytest

from components.evaluate.gate import GateConfig
from components.shared.errors import UserError
from pipelines.config import STAGES, load_config, presets


def _error(*overrides: str, preset: str = "tiny") -> str:
    with pytest.raises(UserError) as info:
        load_config(preset, list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "override, key",
    [
        ("pretrain.max_steps=true", "pretrain.max_steps"),
        ("pretrain.learning_rate=false", "pretrain.learning_rate"),
        ("pretrain.model.hidden_size=yes", "pretrain.model.hidden_size"),  # YAML 1.1: yes is a bool
        ("finetune.learning_rates=[true]", "finetune.learning_rates"),
        ("finetune.max_steps=true", "finetune.max_steps"),
        ("evaluate.gate.tolerance={accuracy: true}", "evaluate.gate.tolerance"),
        ("evaluate.gate.min_gain_over_baseline=true", "evaluate.gate.min_gain_over_baseline"),
        ("ingest.max_docs=true", "ingest.max_docs"),  # int | None
        ("cluster.defaults.accelerator_count=true", "cluster.defaults.accelerator_count"),
    ],
)
def test_a_yes_no_value_for_a_number_is_refused_naming_the_key(override, key):
    message = _error(override)
    assert f"({key})" in message and "yes/no value where a number is needed" in message


@pytest.mark.parametrize("override", ["clean_tokenize.max_seq_len=true", "clean_tokenize.decontaminate_ngram=true"])
def test_fields_with_their_own_validators_refuse_a_bool_too(override):
    assert override.split("=")[0] in _error(override)


def test_a_bool_field_still_takes_a_bool_and_numbers_still_convert():
    config = load_config("tiny", ["clean_tokenize.lowercase=false", "pretrain.max_steps=50.0", "pretrain.learning_rate=1e-3"])
    assert config.clean_tokenize.lowercase is False and config.pretrain.max_steps == 50 and config.pretrain.learning_rate == 1e-3


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_are_refused(value):
    assert "'pretrain.learning_rate'" in _error(f"pretrain.learning_rate={value}")


def test_the_stage_refuses_a_bool_that_reaches_it_as_a_kfp_parameter():
    # A section travels to its task as JSON; the stage rebuilds its config and checks again.
    from components.pretrain.pretrain import PretrainConfig

    section = json.loads(json.dumps({**load_config("tiny").section("pretrain"), "max_steps": True}))
    with pytest.raises(UserError, match=r"pretrain\.max_steps"):
        PretrainConfig.from_params(section, "pretrain")
    with pytest.raises(Exception, match="yes/no"):
        GateConfig.model_validate({"bootstrap_samples": True})


@pytest.mark.parametrize("preset", presets())
def test_no_shipped_preset_holds_a_bool_where_a_number_goes(preset):
    config = load_config(preset)  # the check runs on every preset value, not only on --set
    assert all(config.section(s) is not None for s in STAGES)


@pytest.mark.parametrize("body, kind", [("- pretrain\n- max_steps: 5\n", "list"), ("just words\n", "str"), ("42\n", "int")])
def test_a_preset_that_is_not_a_mapping_is_one_line(tmp_path, body, kind):
    path = tmp_path / "odd.yaml"
    path.write_text(body)
    for overrides in ([], ["pretrain.max_steps=5"]):
        message = _error(*overrides, preset=str(path))
        assert f"holds a YAML {kind}, not a mapping of sections" in message and str(path) in message


def test_a_huge_bad_value_is_quoted_short():
    message = _error("register.alias=" + "[" + ", ".join(["1"] * 50_000) + "]")
    assert "'register.alias'" in message and len(message) < 400
