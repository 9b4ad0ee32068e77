"""Where the code came from: git commit and whether the tree had uncommitted changes."""

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
