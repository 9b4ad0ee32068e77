"""The MLflow tag names are spelt once: lineage and gate tags in components/shared/lineage.py, run
tags in components/shared/tracking.py; every writer and reader (tests included) uses the names."""

from __future__ import annotations

import ast
from pathlib import Path

from components.shared import lineage, tracking

ROOT = Path(__file__).resolve().parents[2]
DEFINED_IN = {ROOT / "components/shared/lineage.py", ROOT / "components/shared/tracking.py"}
TAGS = {v for k, v in vars(lineage).items() if k.endswith("_TAG")} | {tracking.RUN_NAME_TAG, tracking.STAGE_TAG}


def spelt_out(path: Path) -> list[str]:
    """The string constants in `path` (f-string parts too) that are a tag name or an image tag."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if v in TAGS or (v.startswith(lineage.IMAGE_TAG_PREFIX) and v != lineage.IMAGE_TAG_PREFIX):
                found.append(f"{path}:{node.lineno}: {v!r}")
    return found


def test_no_tag_name_is_spelt_out_outside_its_module():
    files = [p for d in ("components", "pipelines", "data_builders", "tests", "bench") for p in (ROOT / d).rglob("*.py") if p not in DEFINED_IN]
    assert len(files) > 50
    hits = [hit for p in files for hit in spelt_out(p)]
    assert not hits, "use the constants of components/shared/lineage.py / tracking.py:\n" + "\n".join(hits)


def test_the_scan_sees_a_spelt_out_tag(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('TAGS = {"lmforge.data_rev": 1, "lmforge.image.cpu": 2}\nQ = f"tags.`lmforge.stage` = {1}"\n')
    assert len(spelt_out(planted)) == 2  # the keys; a tag inside a longer string is message text
