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
    # statements, not lines: the formatter spreads a call of keyword arguments over one line each
    statements = sum(isinstance(n, ast.stmt) for n in ast.walk(fn)) - 1
    assert statements <= 14, f"{stage}_op body has {statements} statements: move logic into {stage}.py"
    branches = [type(n).__name__ for n in ast.walk(fn) if isinstance(n, (ast.If, ast.Try, ast.For, ast.While, ast.IfExp))]
    assert not branches, f"{stage}_op has {branches}: a shim has no logic; move it into {stage}.py or components/shared"
    calls = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert stage in calls, f"{stage}_op must call {stage}()"
    decorator = ast.unparse(fn.decorator_list[0])
    assert "install_kfp_package=False" in decorator and "base_image=" in decorator


@pytest.mark.parametrize("path", sorted(ROOT.glob("*/*component.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shims_pass_the_stage_function_its_directories_by_keyword(path):
    # Positional paths swap silently when a signature changes: (cleaned, pretrained, classifier) in
    # the wrong order still type-checks as three Paths.
    tree = ast.parse(path.read_text())
    stage_functions = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith(f"components.{path.parent.name}.") for a in n.names}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in stage_functions]
    assert calls, f"{path.name} calls no function of its stage"
    positional = [f"{c.func.id} (line {c.lineno})" for c in calls if c.args]
    assert not positional, f"pass arguments by keyword: {positional}"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_module_knows_nothing_of_kfp_or_the_environment(stage):
    source = (ROOT / stage / f"{stage}.py").read_text()
    assert "import kfp" not in source and "from kfp" not in source
    assert "os.environ" not in source


def test_only_the_settings_module_reads_the_environment():
    readers = [p for p in ROOT.rglob("*.py") if "os.environ" in p.read_text() and p.name != "settings.py"]
    assert readers == [], f"read the environment through components/shared/settings.py: {readers}"


def _imports(path: Path):
    """Every module a file imports, at any depth (stages import inside their functions), with
    `from a import b` also giving `a.b` (b may be a module)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _stage_imports(folder: str, stages) -> set[tuple[str, str]]:
    return {(p.relative_to(ROOT).as_posix(), m) for p in (ROOT / folder).rglob("*.py") for m in _imports(p) if any(m == f"components.{s}" or m.startswith(f"components.{s}.") for s in stages)}


@pytest.mark.parametrize("stage", STAGES)
def test_stages_never_import_each_other(stage):
    found = _stage_imports(stage, [s for s in STAGES if s != stage])
    assert not found, f"{stage} imports another stage {sorted(found)}: move what both need into components/shared, an objective or a task"


@pytest.mark.parametrize("folder", ["shared", "objectives", "tasks"])
def test_what_stages_share_imports_no_stage(folder):
    found = _stage_imports(folder, STAGES)
    assert not found, f"components/{folder} imports a stage {sorted(found)}: it must not depend on any"


def test_only_register_and_the_gates_champion_lookup_talk_to_the_registry():
    registry = {"components.shared.registry", "components.shared.model_versions", "components.shared.audit_ledger"}
    users = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py") if registry & set(_imports(p))}
    assert users - {"shared/registry.py", "shared/model_versions.py", "shared/audit_ledger.py"} == {"register/register.py", "evaluate/gate.py"}


# --- the seams: every registered objective and task provides what the README lists ------------


def _seams():
    from components import objectives, tasks

    return {"objective": (objectives, objectives.OBJECTIVES), "task": (tasks, tasks.TASKS)}


def _lacks(module, required) -> list[str]:
    return [name for name in required if not hasattr(module, name)]


@pytest.mark.parametrize("kind", ["objective", "task"])
def test_every_registered_module_provides_every_required_piece(kind):
    import importlib

    registry, modules = _seams()[kind]
    for name, path in modules.items():
        lacking = _lacks(importlib.import_module(path), registry.REQUIRED)
        assert not lacking, f"{kind} {name} ({path}) lacks {lacking}: every {kind} provides all of {registry.__name__}.REQUIRED"


@pytest.mark.parametrize("kind", ["objective", "task"])
def test_the_check_fails_on_a_module_missing_a_piece(kind):
    """The check above is not vacuous: a copy of a real module with one piece removed fails it."""
    import importlib
    import types

    registry, modules = _seams()[kind]
    real = importlib.import_module(next(iter(modules.values())))
    for dropped in registry.REQUIRED:
        copy = types.ModuleType("incomplete")
        copy.__dict__.update({k: v for k, v in vars(real).items() if k != dropped})
        assert _lacks(copy, registry.REQUIRED) == [dropped]


@pytest.mark.parametrize("kind", ["objective", "task"])
def test_the_readme_lists_every_required_piece(kind):
    registry, _ = _seams()[kind]
    readme = (ROOT.parent / "README.md").read_text()
    heading = f"### Adding {'an objective' if kind == 'objective' else 'a task'}"
    assert heading in readme, f"README.md lacks the section {heading!r}"
    section = readme.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    missing = [name for name in registry.REQUIRED if f"`{name}" not in section]
    assert not missing, f"README.md's {heading!r} does not list {missing} (the list is {registry.__name__}.REQUIRED)"


def test_stages_that_need_the_task_ask_the_registry_not_a_task_module():
    """finetune, evaluate and register reach a task through components.tasks.get(config.task);
    only their re-exports of classification helpers name a task module directly."""
    for stage in ("finetune/loop.py", "evaluate/evaluate.py", "register/register.py", "validate/validate.py", "ingest/labeled.py"):
        imports = set(_imports(ROOT / stage))
        assert "components.tasks" in imports or "components.tasks.get" in imports or any(m.startswith("components.tasks") for m in imports), stage
        assert not {"components.tasks.regression", "components.tasks.classification"} & imports, f"{stage} names a task module: ask components.tasks.get(config.task)"
