"""Which version of the code made a run: the git commit of the checkout, when there is one."""

from __future__ import annotations

import os
import subprocess

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _git(*args: str, cwd: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_provenance(path: str = _ROOT) -> dict[str, object]:
    """``{"git_commit": sha, "git_dirty": uncommitted changes to tracked files?}`` of the checkout holding
    ``path``; ``{}`` outside a git checkout (or without git)."""
    sha = _git("rev-parse", "--verify", "HEAD", cwd=path)
    if not sha:
        return {}
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=path)
    return {"git_commit": sha, "git_dirty": bool(status)}
