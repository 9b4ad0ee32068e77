"""No source file over ~350 lines (issue 11): a file that grows past it is split by what it does."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 350


def long_files(paths: list[Path], limit: int = MAX_LINES) -> dict[str, int]:
    counts = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in paths}
    return {name: n for name, n in counts.items() if n > limit}


def tracked_python() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def test_no_python_file_is_over_the_limit():
    files = tracked_python()
    assert len(files) > 50, "git ls-files found too few files: is this a checkout?"
    assert long_files(files) == {}, f"split these files (over {MAX_LINES} lines)"


def test_the_check_sees_a_long_file():
    this = Path(__file__)
    assert long_files([this], limit=5) == {str(this.relative_to(ROOT)): len(this.read_text().splitlines())}
