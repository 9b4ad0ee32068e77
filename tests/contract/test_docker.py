"""Contract: the Dockerfiles are pinned, non-root and copy files that exist (Docker itself cannot
run here; these are the checks that can)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def resolve(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)


def test_both_images_exist():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.train"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_base_image_is_pinned(dockerfile):
    ins = instructions(dockerfile)
    args = dict(a.split("=", 1) for k, a in ins if k == "ARG" and "=" in a)
    stages, bases = set(), []
    for kind, rest in ins:
        if kind == "FROM":
            image, *alias = rest.split(" AS ")
            bases.append(resolve(image.strip(), args))
            stages.update(a.strip() for a in alias)
    external = [b for b in bases if b not in stages]
    assert external
    for base in external:
        assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+", base), f"{base}: pin a full version or a digest, never a moving tag"
        assert not base.endswith(":latest")
    assert len(bases) >= 2, "multi-stage: build tools stay in the build stage"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_a_non_root_user(dockerfile):
    users = [rest for kind, rest in instructions(dockerfile) if kind == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_files_exist_and_install_follows_the_constraints(dockerfile):
    ins = instructions(dockerfile)
    copies = [rest for kind, rest in ins if kind == "COPY" and not rest.startswith("--from")]
    assert copies
    for rest in copies:
        *sources, _ = rest.split()
        for src in sources:
            assert (ROOT / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"
            assert not _ignored(src), f"{src} is excluded by .dockerignore"
    runs = " ".join(rest for kind, rest in ins if kind == "RUN")
    text = dockerfile.read_text()
    assert "-c constraints.txt" in runs and "grep -E '^torch==' constraints.txt" in runs, "torch at the pinned version"
    if dockerfile.name.endswith("cpu"):
        assert "--index-url https://download.pytorch.org/whl/cpu" in runs, "the CPU image takes the CPU torch wheel"
    else:
        assert "nvidia/cuda:" in text and re.search(r"TORCH_INDEX=https://download.pytorch.org/whl/cu12\d", text), "the CUDA build of torch"
    assert "rm -rf /var/lib/apt/lists/*" in runs and "PIP_NO_CACHE_DIR=1" in dockerfile.read_text()


def _ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    return path.rstrip("/") in patterns


def test_dockerignore_keeps_the_build_context_small_and_clean():
    patterns = {p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")}
    for excluded in (".git", ".venv", "data", "mlruns", "mlflow.db", "local_outputs", ".dvcstore", "build", ".env"):
        assert excluded in patterns, f".dockerignore must exclude {excluded}"


def test_bake_tags_the_project_version_and_the_git_sha():
    bake = (ROOT / "docker" / "docker-bake.hcl").read_text()
    for name in ("lmforge-cpu", "lmforge-train"):
        assert f'${{REGISTRY}}/{name}:${{VERSION}}"' in bake and f'${{REGISTRY}}/{name}:${{VERSION}}-${{GIT_SHA}}"' in bake
    script = ROOT / "docker" / "build.sh"
    assert script.stat().st_mode & 0o111, "build.sh is executable"
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
