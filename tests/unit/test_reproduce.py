"""lmforge reproduce: what it refuses, and how it compares two runs (the whole rebuild runs in
tests/local/test_promotion_flow.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from components.shared import artifacts
from components.shared.errors import UserError
from components.shared.lineage import (
    CONFIG_HASH_TAG,
    DATA_FILES_MD5_TAG,
    DATA_MD5_TAG,
    DATA_REPO_TAG,
    DATA_REV_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    PIPELINE_RUN_NAME_TAG,
    PRESET_TAG,
    TOKENIZER_HASH_TAG,
    WEIGHTS_SHA256_TAG,
    git_state,
)
from components.shared.settings import code_dir
from pipelines import reproduce as rp

CODE = git_state(code_dir())


def version(dvc_repo, **tags):
    lineage = {
        DATA_REPO_TAG: str(dvc_repo["repo"]),
        DATA_REV_TAG: dvc_repo["first"],
        CONFIG_HASH_TAG: "abc",
        GIT_COMMIT_TAG: CODE["git_commit"],
        GIT_DIRTY_TAG: "false",
        WEIGHTS_SHA256_TAG: "f00",
        PRESET_TAG: "tiny",
    }
    return SimpleNamespace(name="m", version="1", run_id="r", tags={k: v for k, v in {**lineage, **tags}.items() if v is not None})


def test_references_parse_or_say_the_two_forms():
    assert rp.parse_ref("lmforge-sentiment@champion") == ("lmforge-sentiment", "champion", None)
    assert rp.parse_ref("lmforge-sentiment/12") == ("lmforge-sentiment", None, "12")
    with pytest.raises(UserError, match="neither MODEL@ALIAS nor MODEL/VERSION"):
        rp.parse_ref("lmforge-sentiment")


def test_unknown_version_names_how_to_list(tracking_uri):
    with pytest.raises(UserError, match=r"nope/3 not found in the registry .*lmforge models list"):
        rp.find_version("nope/3")


def test_missing_lineage_is_refused(dvc_repo):
    with pytest.raises(UserError, match=r"m/1 lacks lineage \(lmforge.data_rev, lmforge.weights_sha256\)"):
        rp.check_reproducible(version(dvc_repo, **{DATA_REV_TAG: None, WEIGHTS_SHA256_TAG: None}))


def test_a_plain_path_version_is_refused_for_having_no_data_revision(dvc_repo):
    """Registered by LMForge (its run name is there) from ingest.source=path: no revision, not 'not LMForge's'."""
    mv = version(dvc_repo, **{DATA_REV_TAG: "", DATA_REPO_TAG: ".", PIPELINE_RUN_NAME_TAG: "lmforge-news-1", DATA_FILES_MD5_TAG: '{"/home/u/news.csv": "ab"}'})
    with pytest.raises(UserError) as info:
        rp.check_reproducible(mv)
    message = str(info.value)
    assert message.startswith("m/1 was trained on plain paths (ingest.source=path: /home/u/news.csv), which have no data revision")
    assert "lmforge data add" in message and "not registered by LMForge" not in message


def test_a_version_from_a_dirty_tree_needs_allow_dirty(dvc_repo):
    mv = version(dvc_repo, **{GIT_DIRTY_TAG: "true"})
    with pytest.raises(UserError, match="uncommitted changes .* pass --allow-dirty"):
        rp.check_reproducible(mv)


def test_code_that_is_not_here_is_refused(dvc_repo):
    with pytest.raises(UserError, match=r"does not contain commit 000000000000: check out"):
        rp.check_reproducible(version(dvc_repo, **{GIT_COMMIT_TAG: "0" * 40}))


@pytest.mark.skipif(CODE["git_dirty"], reason="needs a clean checkout (CI): a dirty tree differs from its own HEAD")
def test_a_clean_checkout_of_the_same_commit_is_reproducible(dvc_repo):
    assert rp.check_reproducible(version(dvc_repo))["drift"] == ""


def test_data_that_is_gone_is_refused(dvc_repo, tmp_path):
    with pytest.raises(UserError, match=r"data revision 1234567890ab of m/1 is no longer reachable"):
        rp.check_reproducible(version(dvc_repo, **{DATA_REV_TAG: "1234567890ab" * 3 + "1234"}), allow_dirty=True)
    with pytest.raises(UserError, match="no longer exists here"):
        rp.check_reproducible(version(dvc_repo, **{DATA_REPO_TAG: str(tmp_path / "gone")}), allow_dirty=True)


def logged_run(client, exp_id: str, metrics: dict, weights: dict, tmp_path, tags: dict) -> str:
    run = client.create_run(exp_id, tags=tags)
    for k, v in metrics.items():
        client.log_metric(run.info.run_id, k, v)
    path = tmp_path / run.info.run_id / artifacts.WEIGHTS
    path.parent.mkdir()
    artifacts.write_json(path, weights)
    client.log_artifact(run.info.run_id, str(path), "registration")
    return run.info.run_id


def test_comparison_names_what_differs_and_ignores_timings(tracking_uri, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("t")
    tags = {DATA_MD5_TAG: "d", TOKENIZER_HASH_TAG: "t", CONFIG_HASH_TAG: "c"}
    base = {"eval/accuracy": 0.75, "pretrain/final_loss": 4.5, "pretrain/seconds": 10.0, "eval/gain_over_champion": 0.1}
    a = logged_run(client, exp, base, {"w1": "aa", "w2": "bb"}, tmp_path, tags)
    b = logged_run(client, exp, {**base, "pretrain/seconds": 99.0, "eval/gain_over_champion": -0.2}, {"w1": "aa", "w2": "bb"}, tmp_path, tags)
    same = rp.compare_runs(a, b)
    assert same["match"] and [m[0] for m in same["metrics"]] == ["eval/accuracy", "pretrain/final_loss"]
    assert "reproduced exactly: 2 metrics equal, all 2 weight tensors bit-identical" in rp.render({**same, "ref": "m/1", "run_name": "x"})

    c = logged_run(client, exp, {**base, "eval/accuracy": 0.74}, {"w1": "aa", "w2": "cc"}, tmp_path, {**tags, TOKENIZER_HASH_TAG: "t2"})
    diff = rp.compare_runs(a, c)
    text = rp.render({**diff, "ref": "m/1", "run_name": "x"})
    assert not diff["match"] and diff["differing_tensors"] == ["w2"]
    assert "NOT reproduced exactly" in text and "weights differ in 1 of 2 tensors: w2" in text
    assert "lmforge.tokenizer_hash differs: t vs t2" in text and "eval/accuracy" in text and "<- differs" in text
