"""Nothing but the record readers parses a record file (dataset manifest, run record and metrics, model card).

The scan reads the source of the packages (ecg_k, training, service, dashboard) and the benchmarks: every call
that parses JSON or reads a file as text (``json.load``, ``json.loads``, ``.read_text()``) is a violation when the
function (or module-level statement) around it names a record file or the model card, and so is any raw access
to the card dict the registry stores (``card["..."]``, ``card.get(...)``). ``ecg_k/records/jsonio.py`` is the
one place that parses record files, for the readers of :mod:`ecg_k.records` and :mod:`ecg_k.model_card`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("ecg_k", "training", "service", "dashboard", "benchmarks")
READERS = {"ecg_k/records/jsonio.py"}
RECORD_WORDS = re.compile(
    r"manifest\.json|\bMANIFEST\b|config\.json|\bCONFIG\b|\bRUN_CONFIG\b|metrics\.json|\bMETRICS\b"
    r"|model_card|\bMODEL_CARD\w*|\bcard\b"
)
RAW_CARD = re.compile(r"\bcard(\[\s*[\"']|\.get\()")


def _parses_text(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr in {"load", "loads"} and isinstance(func.value, ast.Name) and func.value.id == "json":
        return True
    return func.attr == "read_text"


def _scopes(tree: ast.Module) -> list[ast.AST]:
    """Functions (innermost first does not matter: each is checked on its own text) and module statements."""
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    module_level = [node for node in tree.body if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef
                                                                  | ast.ClassDef)]
    return [*functions, *module_level]


def violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``path:line: what`` for every record parse outside the readers under ``root``."""
    found = []
    for path in sorted(p for package in packages for p in (root / package).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in READERS:
            continue
        source = path.read_text()
        for match in RAW_CARD.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            found.append(f"{relative}:{line}: raw model-card dict access {match.group(0)!r}")
        tree = ast.parse(source)
        nested = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                  for inner in ast.walk(node) if inner is not node
                  and isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef)}
        for scope in _scopes(tree):
            if id(scope) in nested:
                continue
            text = ast.get_source_segment(source, scope) or ""
            words = RECORD_WORDS.findall(text)
            if not words:
                continue
            for node in ast.walk(scope):
                if isinstance(node, ast.Call) and _parses_text(node):
                    found.append(f"{relative}:{node.lineno}: parses text in a scope that names {sorted(set(words))}")
    return found


def test_only_the_record_readers_parse_record_files() -> None:
    assert violations(REPO_ROOT) == []


@pytest.mark.parametrize("snippet", [
    "import json\n\ndef f(run):\n    return json.loads((run / 'model_card.json').read_text())\n",
    "import json\nfrom x import MANIFEST\n\ndef f(root):\n    path = root / MANIFEST\n"
    "    return json.load(path.open())\n",
    "def f(run):\n    return (run / 'config.json').read_text()\n",
    "def f(row):\n    return row.card.get('thresholds', {})\n",
    "def f(row):\n    return row.card['shot_regions']\n",
])
def test_the_scan_catches_a_stray_reader(tmp_path: Path, snippet: str) -> None:
    (tmp_path / "ecg_k").mkdir()
    (tmp_path / "ecg_k" / "stray.py").write_text(snippet)
    assert violations(tmp_path, ("ecg_k",))
