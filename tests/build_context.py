"""The Docker build context of the images: the allowlist in ``.dockerignore`` (shared by the deploy tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def context_paths(root: Path = REPO_ROOT) -> list[str]:
    """Paths (relative to ``root``) that ``.dockerignore`` lets into the build context: its ``!`` lines.

    The file must exclude everything first (``*``), so that these lines are the whole context.
    """
    lines = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    if not rules or rules[0] != "*":
        raise ValueError(".dockerignore must start with '*' (an allowlist), so no secret reaches the builder")
    return [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]


def build_wheel(out: Path, root: Path = REPO_ROOT, timeout_s: float = 120) -> Path:
    """The ecg-k wheel built from a copy of the build context only (what the images' ``pip install .`` sees)."""
    source = out / "context"
    for name in context_paths(root):
        origin = root / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps",
               "--no-build-isolation", "--no-index", "-q", "-w", str(out / "dist"), str(source)]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"building the wheel failed:\n{result.stdout}\n{result.stderr}")
    (wheel,) = (out / "dist").glob("ecg_k-*.whl")
    return wheel
