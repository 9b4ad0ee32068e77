"""Where a model came from: the git state of the code, and the tag names its lineage is recorded under."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_state(repo: Path) -> dict:
    """{'git_commit': sha or '', 'git_dirty': bool}; data/ and run outputs do not make a tree dirty."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) or not commit}


# The MLflow tag names of a registered version's lineage and its gate verdict, written by register
# and read by reproduce, `models list`, the gate's champion look-up, the model card and the tests:
# one place, so a writer and its readers cannot drift apart (tests/contract/test_tag_names.py).
GIT_COMMIT_TAG = "lmforge.git_commit"
GIT_DIRTY_TAG = "lmforge.git_dirty"  # "true" / "false"
CONFIG_HASH_TAG = "lmforge.config_hash"
CONFIG_ARTIFACT_TAG = "lmforge.config_artifact"  # the resolved preset's file on the version's run
PRESET_TAG = "lmforge.preset"
SEEDS_TAG = "lmforge.seeds"  # JSON: stage -> seed
PIPELINE_RUN_NAME_TAG = "lmforge.pipeline_run_name"
KFP_RUN_ID_TAG = "lmforge.kfp_run_id"
DATA_REPO_TAG = "lmforge.data_repo"
DATA_REV_TAG = "lmforge.data_rev"  # the DVC data commit; "" for plain files
DATA_MD5_TAG = "lmforge.data_md5"  # data.dvc's md5
DATA_FILES_MD5_TAG = "lmforge.data_files_md5"  # JSON: file -> md5
TOKENIZER_HASH_TAG = "lmforge.tokenizer_hash"
VALIDATION_TAG = "lmforge.validation"  # "passed" / "failed"
VALIDATION_SUITES_TAG = "lmforge.validation_suites"  # "k/n passed"
PACKAGES_TAG = "lmforge.packages"  # JSON: package -> version
WEIGHTS_SHA256_TAG = "lmforge.weights_sha256"
IMAGE_TAG_PREFIX = "lmforge.image."  # + the image's role: cpu, train
GATE_TAG = "lmforge.gate"  # "passed" / "failed"
GATE_SUMMARY_TAG = "lmforge.gate_summary"  # the gate's one-paragraph verdict with intervals


def image_tag(role: str) -> str:
    """The tag naming the image that ran a role ("cpu", "train")."""
    return IMAGE_TAG_PREFIX + role
