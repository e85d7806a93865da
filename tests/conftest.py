"""Shared fixtures: the real test data, verified by sha256: a few tiny records shipped in tests/data (the core
tests use those, so they run on a fresh clone) and the larger set beside the checkout (../shared/data/real)."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# One server secret for the API-key hashes of the whole session, before anything reads the settings: keys
# created in this process must verify in the servers and CLIs it starts, whatever ECGK_HOME those use.
os.environ.setdefault("ECGK_API_KEY_SECRET", "test-session-api-key-secret-0123456789abcdef")


def storage_limited(max_file_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes any file larger than ``max_file_bytes`` unwritable (EFBIG), as a full disk
    would, for the child and its workers; without root, unlike a small mount."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing it
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return limit


def run_ecgk(args: list[str], max_file_bytes: int | None = None, timeout: float = 300
             ) -> subprocess.CompletedProcess[str]:
    """``python -m ecg_k ARGS`` in a child process (optionally with :func:`storage_limited`)."""
    return subprocess.run([sys.executable, "-m", "ecg_k", *args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=None if max_file_bytes is None else storage_limited(max_file_bytes))


TINY_DATA = REPO_ROOT / "tests" / "data"


def _real_data_root() -> Path:
    return Path(os.environ.get("ECGK_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real"))


def _check_sums(root: Path, sums: Path) -> None:
    """Every data file listed in ``sums`` (``sha256sum`` output) is unchanged. Markdown files are documentation,
    not fixtures (SOURCES.md was edited after the shared manifest was made)."""
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        if name.endswith(".md"):
            continue
        actual = hashlib.sha256((root / name.lstrip("*")).read_bytes()).hexdigest()
        assert actual == digest, f"fixture drifted: {name}"


@pytest.fixture(scope="session")
def tiny_data() -> Path:
    """The tiny real records shipped in tests/data (tests/data/README.md: sources, licences), checked."""
    _check_sums(TINY_DATA, TINY_DATA / "SHA256SUMS")
    return TINY_DATA


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of the larger real MIMIC/CinC/PTB test set (not in the repository); every data file checked against
    MANIFEST.sha256. Tests that need it skip without it; the core tests use :func:`tiny_data`."""
    root = _real_data_root()
    manifest = root / "MANIFEST.sha256"
    if not manifest.is_file():
        pytest.skip(f"the larger real test set is not at {root}; set ECGK_REAL_DATA to the shared/data/real folder")
    _check_sums(root, manifest)
    return root


@pytest.fixture(scope="session")
def tiny_cinc_dir(tiny_data: Path) -> Path:
    """Three CinC 2021 12-lead records, one per source (E07500 Georgia, HR06000 PTB-XL, JS20000 Ningbo)."""
    return tiny_data / "cinc2021"


@pytest.fixture(scope="session")
def ecg_demo_root(real_data: Path) -> Path:
    return (real_data / "mimic-iv-ecg-demo-0.1__SebPelay0-Mimic-Prep"
            / "mimic-iv-ecg-demo-diagnostic-electrocardiogram-matched-subset-demo-0.1")


@pytest.fixture(scope="session")
def labs_v1_file(real_data: Path) -> Path:
    return real_data / "mimic-iv-clinical-demo-1.0__clementinojr-codingSkills-main" / "hosp" / "labevents_potassium.csv"


@pytest.fixture(scope="session")
def cinc_dir(real_data: Path) -> Path:
    return real_data / "physionet-challenge-2021__DeepPSP-torch_ecg" / "sample-data" / "cinc2021"


@pytest.fixture(scope="session")
def mimic_header_dir(tiny_data: Path) -> Path:
    """Two real MIMIC-IV-ECG v1.0 headers (no signal files), the same bytes as in the larger set."""
    return tiny_data / "mimic-iv-ecg" / "p10000032"


@pytest.fixture(scope="session")
def tiny_labs_file(tiny_data: Path) -> Path:
    """The first 40 potassium rows of the MIMIC-IV clinical demo v1.0 (the head of :func:`labs_v1_file`)."""
    return tiny_data / "mimic-iv-demo" / "labevents_potassium_head.csv"


@pytest.fixture(scope="session")
def tiny_record_list(tiny_data: Path) -> Path:
    """The first 20 rows of the MIMIC-IV-ECG demo's record_list.csv."""
    return tiny_data / "mimic-iv-demo" / "record_list_head.csv"
