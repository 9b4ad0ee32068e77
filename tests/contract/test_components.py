"""Contract: components stay thin shims over pure stage functions (DESIGN.md, style 1-2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipelines.config import STAGES

ROOT = Path(__file__).resolve().parents[2] / "components"


@pytest.mark.parametrize("stage", STAGES)
def test_component_is_a_short_shim_calling_the_stage_function(stage):
    tree = ast.parse((ROOT / stage / "component.py").read_text())
    [fn] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert fn.name == f"{stage}_op"
    body_lines = fn.end_lineno - fn.body[0].lineno + 1
    assert body_lines <= 20, f"{stage}_op body is {body_lines} lines: move logic into {stage}.py"
    branches = [type(n).__name__ for n in ast.walk(fn) if isinstance(n, (ast.If, ast.Try, ast.For, ast.While, ast.IfExp))]
    assert not branches, f"{stage}_op has {branches}: a shim has no logic; move it into {stage}.py or components/shared"
    calls = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert stage in calls, f"{stage}_op must call {stage}()"
    decorator = ast.unparse(fn.decorator_list[0])
    assert "install_kfp_package=False" in decorator and "base_image=" in decorator


@pytest.mark.parametrize("stage", STAGES)
def test_stage_module_knows_nothing_of_kfp_or_the_environment(stage):
    source = (ROOT / stage / f"{stage}.py").read_text()
    assert "import kfp" not in source and "from kfp" not in source
    assert "os.environ" not in source


def test_only_the_settings_module_reads_the_environment():
    readers = [p for p in ROOT.rglob("*.py") if "os.environ" in p.read_text() and p.name != "settings.py"]
    assert readers == [], f"read the environment through components/shared/settings.py: {readers}"
