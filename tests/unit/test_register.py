"""register against a real, fresh sqlite MLflow store: versions, aliases, lineage, a loadable model."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.ingest.ingest import IngestConfig, ingest
from components.register.register import RegisterConfig, register
from components.shared import artifacts, tracking
from components.shared.errors import UserError
from components.shared.images import CPU_IMAGE, GPU_IMAGE, IMAGES
from components.shared.lineage import (
    CONFIG_HASH_TAG,
    DATA_MD5_TAG,
    DATA_REV_TAG,
    GATE_SUMMARY_TAG,
    GATE_TAG,
    GIT_COMMIT_TAG,
    KFP_RUN_ID_TAG,
    PIPELINE_RUN_NAME_TAG,
    TOKENIZER_HASH_TAG,
    VALIDATION_TAG,
    WEIGHTS_SHA256_TAG,
    git_state,
    image_tag,
)

NAME = "lmforge-test-sentiment"
RUN = "lmforge-unit-20260101-000000"
LINEAGE_KEYS = (
    GIT_COMMIT_TAG,
    DATA_REV_TAG,
    DATA_MD5_TAG,
    CONFIG_HASH_TAG,
    TOKENIZER_HASH_TAG,
    PIPELINE_RUN_NAME_TAG,
    image_tag("cpu"),
    image_tag("train"),
)


@pytest.fixture(scope="module")
def dvc_raw_dir(dvc_repo, tmp_path_factory):
    """The ingest output of the DVC repo at its first commit: a manifest with a real rev and md5."""
    out = tmp_path_factory.mktemp("register") / "raw"
    config = IngestConfig(source="dvc", corpus_path="data/corpus.jsonl", labeled_path="data/labeled.csv", dvc_file="data.dvc")
    ingest(out, config, data_repo=str(dvc_repo["repo"]), data_rev=dvc_repo["first"])
    return out


@pytest.fixture(scope="module")
def lineage(dvc_repo) -> dict:
    """What the CLI passes: the code's git state, the preset's config hash, the image tags."""
    from pipelines.config import load_config

    state = git_state(dvc_repo["repo"])  # a real commit of a real repo stands in for the code's
    return {**state, "config_hash": load_config("tiny").hash(), "preset": "tiny", "images": IMAGES}


@pytest.fixture
def run_register(classifier_dir, eval_dir, dvc_raw_dir, cleaned_dir, validation_dir, lineage, tracking_uri, tmp_path):
    """register() with the session's artifacts into the test's fresh store; returns its output dir."""

    def run(out_name: str = "registration", raw=None, run_name: str = RUN, **settings) -> tuple[dict, object]:
        out = tmp_path / out_name
        config = RegisterConfig(model_name=NAME, **settings)
        metrics = register(classifier_dir, eval_dir, raw or dvc_raw_dir, cleaned_dir, validation_dir, out, config, run_name, lineage, "kfp-run-123")
        return metrics, out

    return run


def aliases(c, name: str) -> dict:
    """alias -> version as a string (MLflow returns ints from some stores, strings from others)."""
    return {alias: str(version) for alias, version in c.get_registered_model(name).aliases.items()}


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_version_with_alias_and_lineage_then_a_second_moves_the_alias(run_register, tracking_uri, dvc_repo, cleaned_dir, lineage):
    metrics, out = run_register()
    c = client(tracking_uri)
    assert metrics["register/version"] == 1
    store_dir = Path(tracking_uri.removeprefix("sqlite:///")).parent  # artifacts beside the store
    assert c.get_experiment_by_name("lmforge").artifact_location == (store_dir / "mlruns").as_uri()
    assert aliases(c, NAME) == {"challenger": "1"}

    tags = c.get_model_version(NAME, "1").tags
    first = dvc_repo["first"]
    recorded = yaml.safe_load(subprocess.run(["git", "-C", str(dvc_repo["repo"]), "show", f"{first}:data.dvc"], check=True, capture_output=True, text=True).stdout)
    tokenizer_sha = hashlib.sha256((cleaned_dir / artifacts.TOKENIZER_DIR / "tokenizer.json").read_bytes()).hexdigest()
    expected = {
        GIT_COMMIT_TAG: lineage["git_commit"],
        DATA_REV_TAG: first,
        DATA_MD5_TAG: recorded["outs"][0]["md5"],
        CONFIG_HASH_TAG: lineage["config_hash"],
        TOKENIZER_HASH_TAG: tokenizer_sha,
        PIPELINE_RUN_NAME_TAG: RUN,
        image_tag("cpu"): CPU_IMAGE,
        image_tag("train"): GPU_IMAGE,
    }
    assert set(LINEAGE_KEYS) <= set(tags)
    assert {k: tags[k] for k in LINEAGE_KEYS} == expected
    assert all(expected.values()) and len(expected[GIT_COMMIT_TAG]) == 40
    assert tags[VALIDATION_TAG] == "passed"

    registration = artifacts.read_json(out / artifacts.REGISTRATION)
    assert registration["uri"] == f"models:/{NAME}/1" and registration["alias"] == "challenger"
    assert registration["tags"][DATA_REV_TAG] == first
    # The version points at the pipeline's parent run, which carries the lineage too.
    run = c.get_run(c.get_model_version(NAME, "1").run_id)
    assert run.data.tags[tracking.RUN_NAME_TAG] == RUN and run.data.tags[DATA_MD5_TAG] == expected[DATA_MD5_TAG]

    # The same pipeline run registering again (a retried task) finds its version: no second one.
    metrics, _ = run_register("registration-retry")
    assert metrics["register/version"] == 1 and metrics["register/created"] == 0
    assert len(c.search_model_versions(f"name='{NAME}'")) == 1

    metrics, out2 = run_register("registration2", run_name=RUN + "-b")
    assert metrics["register/version"] == 2
    assert aliases(c, NAME) == {"challenger": "2"}  # auto_promote is off: no champion
    assert {str(v.version) for v in c.search_model_versions(f"name='{NAME}'")} == {"1", "2"}
    assert artifacts.read_json(out2 / artifacts.REGISTRATION)["uri"] == f"models:/{NAME}/2"


def test_auto_promotion_card_and_recorded_moves(run_register, tracking_uri, eval_dir):
    from components.shared import registry

    gate = artifacts.read_json(eval_dir / artifacts.GATE_REPORT)
    assert gate["passed"]  # the session's tiny model beats the majority baseline
    metrics, out = run_register(auto_promote=True)
    c = client(tracking_uri)
    assert aliases(c, NAME) == {"challenger": "1", "champion": "1"} and metrics["register/promoted"] == 1
    version = c.get_model_version(NAME, "1")
    assert version.tags[GATE_TAG] == "passed" and version.tags[GATE_SUMMARY_TAG] == gate["summary"]
    assert version.tags[KFP_RUN_ID_TAG] == "kfp-run-123"
    assert version.description.startswith(f"# {NAME} version 1") and "## Lineage" in version.description
    report = artifacts.read_json(eval_dir / artifacts.EVAL_REPORT)
    card = version.description.splitlines()
    header = card.index("| metric | this model | majority baseline | TF-IDF + LR | random-init control | champion |")
    acc_row = card[header + 2].split(" | ")
    assert acc_row[3] == f"{report['baseline_tfidf_accuracy']:.4f}" and acc_row[2] == f"{report['baseline_majority_accuracy']:.4f}"
    assert report["baseline_tfidf_chosen"] in version.description
    assert any(line.startswith("- inputs: [CLS] text [SEP], at most 32 tokens (0 labeled texts cut); a longer text keeps a quarter head and three quarters tail") for line in card)
    assert float(version.tags["metric.baseline_tfidf_accuracy"]) == pytest.approx(report["baseline_tfidf_accuracy"], abs=1e-6)
    assert float(version.tags["metric.gain_over_tfidf"]) == pytest.approx(report["gain_over_tfidf"], abs=1e-6)
    moves = [(r["alias"], r["to_version"], r["action"]) for r in registry.history(NAME)]
    assert moves == [("challenger", "1", "register"), ("champion", "1", "auto-promote")]
    run_files = {a.path for a in c.list_artifacts(version.run_id, "registration")}
    assert {"registration/model_card.md", "registration/weights.json"} <= run_files


def test_dry_run_records_weights_but_registers_nothing(run_register, tracking_uri, classifier_dir):
    from components.register.register import weight_hashes, weights_digest

    metrics, out = run_register(dry_run=True)
    c = client(tracking_uri)
    assert metrics == {"register/dry_run": 1} and c.search_model_versions(f"name='{NAME}'") == []
    record = artifacts.read_json(out / artifacts.REGISTRATION)
    assert record["dry_run"] and record["uri"] == ""
    run = c.get_run(record["run_id"])
    assert run.data.tags[WEIGHTS_SHA256_TAG] == weights_digest(weight_hashes(classifier_dir))


def test_registered_model_loads_with_pyfunc_and_predicts_label_names(run_register, tracking_uri, cleaned_dir, eval_dir):
    import mlflow

    run_register()
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    test = labeled[labeled.split == "test"]
    out = model.predict(test["text"].tolist())
    assert len(out) == len(test) and set(out["label"]) <= {"negative", "positive"}
    assert ((out["score"] >= 0) & (out["score"] <= 1)).all()
    # The served model (its own tokenizer, from MLflow) scores what evaluate measured.
    served = (out["label"].map({"negative": 0, "positive": 1}).to_numpy() == test["label"].to_numpy()).mean()
    report = artifacts.read_json(eval_dir / artifacts.EVAL_REPORT)
    assert served == pytest.approx(report["accuracy"])
    # A text longer than the encoder's 64 positions is cut to the trained 32 tokens, not an error.
    long = " ".join(test["text"].tolist()[:20])
    assert len(model.predict([long, test["text"].iloc[0]])) == 2
    # The version's metric tags are the evaluation's numbers.
    tags = client(tracking_uri).get_model_version(NAME, "1").tags
    assert float(tags["metric.accuracy"]) == pytest.approx(report["accuracy"], abs=1e-6)


def test_missing_manifest_raises_and_registers_nothing(run_register, tracking_uri, tmp_path):
    empty = tmp_path / "raw-without-manifest"
    empty.mkdir()
    with pytest.raises(UserError, match=r"manifest\.json is missing: the ingest stage must run before register") as info:
        run_register(raw=empty)
    assert "\n" not in str(info.value)
    c = client(tracking_uri)
    assert c.search_registered_models() == []
    assert c.search_model_versions(f"name='{NAME}'") == []
    experiments = [e.experiment_id for e in c.search_experiments()]
    assert c.search_runs(experiments) == []  # not even the pipeline's parent run was started
    assert not (tmp_path / "registration").exists()


def test_a_failed_alias_rolls_the_version_back(classifier_dir, eval_dir, dvc_raw_dir, cleaned_dir, validation_dir, lineage, tracking_uri, tmp_path):
    # Bypass the config's check to reach MLflow's own refusal, as a registry-side failure would.
    config = RegisterConfig.model_construct(model_name=NAME, alias="not/allowed")
    with pytest.raises(UserError, match="is not an alias name"):
        register(classifier_dir, eval_dir, dvc_raw_dir, cleaned_dir, validation_dir, tmp_path / "registration", config, RUN, lineage)
    assert client(tracking_uri).search_model_versions(f"name='{NAME}'") == []
    assert not (tmp_path / "registration").exists()


def test_config_refuses_an_alias_mlflow_would_refuse():
    with pytest.raises(UserError, match="register.alias"):
        RegisterConfig.from_params({"alias": "not/allowed"}, "register")
