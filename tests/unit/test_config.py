"""pipelines/config.py: presets validate against the code, overrides are typed, errors name the key."""

from __future__ import annotations

import json
import re

import pytest

from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig
from components.pretrain.pretrain import PretrainConfig
from components.shared.errors import UserError
from pipelines.config import PRESETS_DIR, STAGES, PipelineConfig, load_config, presets


def test_the_shipped_presets_are_found():
    assert {"demo", "tiny"} <= set(presets())
    assert presets() == sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("preset", presets())
def test_every_preset_validates_and_each_section_rebuilds_its_stage_config(preset):
    config = load_config(preset)
    assert isinstance(config, PipelineConfig) and config.description
    assert set(config.resolved()) == {"description", *STAGES}
    for stage in STAGES:
        typed = config.stage(stage)
        section = config.section(stage)
        assert type(typed).from_params(section, stage) == typed
        # KFP hands a dict parameter back through JSON, with every int turned into a float.
        floats = json.loads(json.dumps(section), parse_int=float)
        assert type(typed).from_params(floats, stage) == typed


@pytest.mark.parametrize(
    "override, needle",
    [
        ("clean_tokenize.block_size=256", "pretrain.model.max_position 128 is shorter than clean_tokenize.block_size/max_seq_len (256/64)"),
        ("clean_tokenize.max_seq_len=auto", "(64/auto, max_seq_len_cap 256): raise max_position to at least 256 or lower clean_tokenize.max_seq_len_cap"),
        ("pretrain.model.num_heads=3", "hidden_size 32 is not divisible by num_heads 3"),
        ("validate.labels=[0, 1, 2]", "finetune.label_names names 2 classes but validate.labels allows 3"),
        ("validate.min_doc_chars=500", "validate's length bounds are stricter than what clean_tokenize keeps"),
        ("finetune.learning_rate=1e-4", "finetune.learning_rate and finetune.learning_rates are both set: keep one"),
        ("finetune.epochs=3", "finetune.epochs is gone: the budget is finetune.max_steps"),
        ("finetune.eval_every=31", "eval_every 31 is beyond max_steps 30"),
    ],
)
def test_sections_that_disagree_fail_before_anything_runs(override, needle):
    load_config("tiny")  # the preset itself is consistent
    with pytest.raises(UserError, match=re.escape(needle)) as info:
        load_config("tiny", [override])
    assert "\n" not in str(info.value)


def test_auto_max_seq_len_within_the_model_positions_is_accepted():
    clean = load_config("tiny", ["clean_tokenize.max_seq_len=auto", "clean_tokenize.max_seq_len_cap=128"]).clean_tokenize
    assert clean.max_seq_len == "auto" and clean.longest_seq_len == 128
    with pytest.raises(UserError, match="clean_tokenize.max_seq_len"):
        load_config("tiny", ["clean_tokenize.max_seq_len=longest"])


def test_decontamination_off_survives_the_trip_to_the_stage():
    # A section reaches the stage without its None values; off must not turn back into 13.
    section = load_config("tiny", ["clean_tokenize.decontaminate_ngram=null"]).section("clean_tokenize")
    assert CleanTokenizeConfig.from_params(section, "clean_tokenize").decontaminate_ngram == 0
    assert load_config("tiny").clean_tokenize.decontaminate_ngram == 13


def test_a_null_that_is_not_the_default_survives_the_trip_to_the_stage():
    # dropout: null means "the model's own dropout"; dropping it from the section rebuilt 0.0.
    config = load_config("tiny", ["pretrain.dropout=null"])
    section = json.loads(json.dumps(config.section("pretrain")))  # as KFP hands it back
    assert section["dropout"] is None and PretrainConfig.from_params(section, "pretrain").dropout is None
    assert PretrainConfig.from_params(load_config("tiny").section("pretrain"), "pretrain").dropout == 0.0
    # A None that is the default stays out, so sections (and the config hash) are as before.
    assert "max_docs" not in load_config("tiny", ["ingest.max_docs=null"]).section("ingest")


def test_the_data_repository_and_revision_default_in_one_place(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_PROJECT_DIR", str(tmp_path))
    config = load_config("tiny", ["cluster.data_repo=https://git.example/data.git"])
    # local: this project's checkout at HEAD; cluster: cluster.data_repo at the code's commit.
    assert config.data_source("local", "c0ffee") == (str(tmp_path.resolve()), "HEAD")
    assert config.data_source("cluster", "c0ffee") == ("https://git.example/data.git", "c0ffee")
    # What the user passed wins on both targets.
    assert config.data_source("local", "c0ffee", "/elsewhere", "v1") == ("/elsewhere", "v1")
    assert config.data_source("cluster", "c0ffee", "https://other/x.git", "v2") == ("https://other/x.git", "v2")
    # Plain files read no repository locally.
    assert load_config("tiny", ["ingest.source=path"]).data_source("local", "c0ffee")[0] == ""


def test_overrides_are_parsed_as_typed_values():
    config = load_config(
        "tiny",
        [
            "pretrain.max_steps=50",
            "pretrain.learning_rate=1e-3",  # PyYAML reads this as a string; the config still gets a float
            "finetune.learning_rates=[2.5e-4, 1e-3]",
            "clean_tokenize.lowercase=false",
            "finetune.label_names=[bad, good]",
            "pretrain.model.hidden_size=64",
            "register.alias=staging",
            "validate.class_share_tolerance=0.1",
            "ingest.max_docs=null",
        ],
    )
    assert config.pretrain.max_steps == 50 and type(config.pretrain.max_steps) is int
    assert config.pretrain.learning_rate == 1e-3 and type(config.pretrain.learning_rate) is float
    assert config.finetune.learning_rates == [2.5e-4, 1e-3] and all(type(r) is float for r in config.finetune.learning_rates)
    assert config.clean_tokenize.lowercase is False
    assert config.finetune.label_names == ["bad", "good"]
    assert config.stage("register").alias == "staging"
    assert config.stage("validate").class_share_tolerance == 0.1
    assert config.ingest.label_names == ["bad", "good"] and config.stage("validate").labels == [0, 1]  # named once, in finetune
    assert config.ingest.max_docs is None and "max_docs" not in config.section("ingest")
    # A nested override changes one key and keeps the preset's other sizes.
    tiny = load_config("tiny").pretrain.model
    assert config.pretrain.model.hidden_size == 64
    assert config.pretrain.model.model_dump(exclude={"hidden_size"}) == tiny.model_dump(exclude={"hidden_size"})


def test_later_overrides_win_and_the_preset_file_is_untouched():
    before = (PRESETS_DIR / "tiny.yaml").read_text()
    config = load_config("tiny", ["pretrain.max_steps=5", "pretrain.max_steps=7"])
    assert config.pretrain.max_steps == 7
    assert (PRESETS_DIR / "tiny.yaml").read_text() == before
    assert load_config("tiny").pretrain.max_steps != 7


def test_hash_follows_the_recipe_not_the_description():
    base = load_config("tiny")
    assert base.hash() == load_config("tiny").hash() and len(base.hash()) == 64
    assert load_config("tiny", ["description=another words"]).hash() == base.hash()
    assert load_config("tiny", ["pretrain.max_steps=21"]).hash() != base.hash()
    assert load_config("tiny").hash() != load_config("demo").hash()


@pytest.mark.parametrize(
    "override, key",
    [
        ("pretrain.max_stpes=5", "pretrain.max_stpes"),
        ("pretrain.model.hiden_size=8", "pretrain.model.hiden_size"),
        ("pretrian.max_steps=5", "pretrian"),
        ("validate.min_class_fractoin=0.2", "validate.min_class_fractoin"),
    ],
)
def test_unknown_key_names_the_dotted_key(override, key):
    with pytest.raises(UserError) as info:
        load_config("tiny", [override])
    message = str(info.value)
    assert f"'{key}'" in message and "unknown" in message and "\n" not in message


@pytest.mark.parametrize(
    "override, key",
    [
        ("pretrain.max_steps=many", "pretrain.max_steps"),
        ("pretrain.max_steps=2.5", "pretrain.max_steps"),
        ("pretrain.max_steps=0", "pretrain.max_steps"),
        ("pretrain.model.num_heads=two", "pretrain.model.num_heads"),
        ("clean_tokenize.lowercase=maybe", "clean_tokenize.lowercase"),
        ("clean_tokenize.normalization=NFD", "clean_tokenize.normalization"),
        ("finetune.label_names=positive", "finetune.label_names"),
        ("finetune.learning_rates=[]", "finetune.learning_rates"),
        ("finetune.learning_rates=[0.001, -1]", "finetune.learning_rates.1"),
        ("finetune.pooling=mean", "finetune.pooling"),
        ("finetune.layer_decay=1.5", "finetune.layer_decay"),
        ("validate.class_share_tolerance=2", "validate.class_share_tolerance"),
        ("register.model_name=", "register.model_name"),
        ("ingest.source=s3", "ingest.source"),
    ],
)
def test_wrong_type_or_value_names_the_dotted_key(override, key):
    with pytest.raises(UserError) as info:
        load_config("tiny", [override])
    message = str(info.value)
    assert f"'{key}'" in message and "\n" not in message


@pytest.mark.parametrize("override, needle", [("pretrain.max_steps", "section.key=value"), ("=5", "section.key=value"), ("description.x=1", "'description' is a value")])
def test_malformed_override_is_a_user_error(override, needle):
    with pytest.raises(UserError, match=needle):
        load_config("tiny", [override])


def test_missing_preset_names_the_available_ones():
    with pytest.raises(UserError) as info:
        load_config("tinny")
    message = str(info.value)
    assert "'tinny'" in message and "\n" not in message
    assert all(name in message for name in presets())


def test_a_preset_path_loads_and_bad_yaml_is_a_user_error(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("description: mine\npretrain:\n  max_steps: 3\n")
    assert load_config(str(good)).pretrain.max_steps == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML") as info:
        load_config(str(bad))
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="unknown config key 'pretrain.max_step'"):
        (tmp_path / "typo.yaml").write_text("pretrain:\n  max_step: 3\n")
        load_config(str(tmp_path / "typo.yaml"))


def test_tiny_fine_tunes_in_a_few_dozen_steps():
    """The whole tiny pipeline stays at ~1 min: one rate, a short budget, for the classifier and the control."""
    ft = load_config("tiny").finetune
    assert len(ft.learning_rates) * ft.max_steps * (1 + ft.control) <= 60
    # The old single-rate key still works where no list is given, as a one-rate search.
    assert PipelineConfig.model_validate({"finetune": {"learning_rate": 3e-4}}).finetune.learning_rates == [3e-4]
