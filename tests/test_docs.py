"""The user documentation pastes and runs: every bash block of the README and docs/ parses (`bash -n`) and
passes shellcheck, every relative link points into the repository, and nothing a user needs lives outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_deploy_files import _tool

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def bash_blocks(document: Path) -> list[str]:
    return FENCE.findall(document.read_text())


def _blocks() -> list[tuple[str, str]]:
    return [(f"{document.relative_to(REPO_ROOT)}#{i}", block)
            for document in DOCUMENTS for i, block in enumerate(bash_blocks(document))]


def test_the_extractor_finds_the_readme_commands() -> None:
    readme = bash_blocks(REPO_ROOT / "README.md")
    assert "./scripts/setup.sh && .venv/bin/ecgk demo\n" in readme
    assert any("--hosp-root /data/mimic-iv/3.1/hosp" in block for block in readme)


def test_shellcheck_catches_what_a_paste_would_break() -> None:
    """The old README's ingest block: a comment after each backslash ends the command there."""
    broken = "ecgk ingest \\\n  --ecg-root /x \\          # a comment\n  --hosp-root /y\n"
    lint = subprocess.run([_tool("shellcheck"), "-s", "bash", "-"], input=broken, capture_output=True, text=True,
                          timeout=60)
    assert lint.returncode != 0 and "SC2215" in lint.stdout  # "This flag is used as a command name"


@pytest.mark.parametrize(("name", "block"), _blocks(), ids=[name for name, _ in _blocks()])
def test_every_bash_block_parses_and_passes_shellcheck(name: str, block: str) -> None:
    syntax = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=30)
    assert syntax.returncode == 0, f"{name}: {syntax.stderr}"
    lint = subprocess.run([_tool("shellcheck"), "-s", "bash", "-"], input=block, capture_output=True, text=True,
                          timeout=60)
    assert lint.returncode == 0, f"{name}:\n{lint.stdout}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_links_stay_inside_the_repository(document: Path) -> None:
    text = document.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text
    for target in LINK.findall(text):
        if "://" in target:
            continue
        assert (document.parent / target).resolve().exists(), f"{document.name} links to missing {target}"


def test_licence_and_citation_ship() -> None:
    import yaml

    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert {"title", "authors", "message", "version"} <= set(citation)
    titles = " ".join(reference["title"] for reference in citation["references"])
    assert "Dist Loss" in titles and "MIMIC-IV-ECG" in titles and "MIMIC-IV, a freely" in titles
    assert (REPO_ROOT / "LICENSE").read_text().startswith("MIT License")
