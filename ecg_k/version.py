"""The code version recorded in every artefact (dataset manifest, run config, model card)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from ecg_k import __version__

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO_ROOT), *args], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.cache
def code_version() -> dict[str, str | bool | None]:
    """Package version plus git commit and dirty flag when running from a checkout."""
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"package": __version__, "git_commit": commit, "git_dirty": dirty}
