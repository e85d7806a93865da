"""The Docker build context of the images: the allowlist in ``.dockerignore`` (shared by the deploy tests)."""

from __future__ import annotations

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
