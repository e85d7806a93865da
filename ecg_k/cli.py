"""The ``ecgk`` command line (Typer). Data commands live here; later packages add theirs."""

from __future__ import annotations

import errno
import functools
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ecg_k.data.cohort import CohortConfig
from ecg_k.data.errors import DataInputError
from ecg_k.data.ingest import IngestConfig, Ingestor
from ecg_k.data.splits import SPLITS
from ecg_k.db.cli import audit_app, db_app, keys_app, models_app
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.settings import get_settings

app = typer.Typer(
    name="ecgk", help="ecg-k: blood potassium from the ECG.", no_args_is_help=True, add_completion=False
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["dist.loss_weight=1", "seed=3"]`` -> nested dict; values parsed as JSON when they can be."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.strip().split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


@functools.cache
def load_plugins() -> None:
    """Add the commands other packages register under the ``ecgk.commands`` entry-point group."""
    for entry in entry_points(group="ecgk.commands"):
        entry.load()(app)


def fail(message: str, code: int = 2) -> None:
    """Print a clear error and exit non-zero (never a traceback for bad input)."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output directory (MIMIC layout).")],
    n_ecgs: Annotated[int, typer.Option(help="Number of ECGs.")] = 4000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = get_settings().workers,
) -> None:
    """Generate the synthetic ECG-K-DIR dataset in MIMIC-IV layout (the embedded default)."""
    from ecg_k.synth import generate_dataset

    try:
        summary = generate_dataset(out, n_ecgs=n_ecgs, seed=seed, workers=workers)
    except (ValueError, FileExistsError) as err:
        fail(str(err))
    console.print(f"synthetic dataset: {summary.n_ecgs} ECGs, {summary.n_subjects} subjects -> {summary.out}")


@app.command()
def ingest(
    ecg_root: Annotated[Path, typer.Option(help="MIMIC-IV-ECG root (holds record_list.csv).")],
    hosp_root: Annotated[Path, typer.Option(help="MIMIC-IV hosp dir (or its parent, or a labevents file).")],
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")],
    window_min: Annotated[float, typer.Option(help="Pairing window, minutes either side.")] = 60.0,
    leads: Annotated[str, typer.Option(help="Leads by name, comma-separated, or 'all'.")] = "I",
    fs: Annotated[float, typer.Option(help="Output sampling rate (Hz).")] = 500.0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = get_settings().workers,
    seed: Annotated[int, typer.Option(help="Seed of the balanced split.")] = get_settings().seed,
    itemids: Annotated[str, typer.Option(help="K+ itemids, comma-separated (50822 = whole blood).")] = "50971",
    balanced_max_per_bin: Annotated[int, typer.Option(help="Cap on val/test pairs per 0.1 bin.")] = 100,
    shard_size: Annotated[int, typer.Option(help="Records per resumable shard.")] = 256,
    patients: Annotated[Path | None, typer.Option(help="Dir with patients.csv[.gz] if not in hosp root.")] = None,
    cohort_only: Annotated[bool, typer.Option("--cohort-only", help="Stop after pairing and splitting.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a different dataset in --out.")] = False,
    max_shards: Annotated[int | None, typer.Option(help="Process at most N shards, then stop (resumable).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pair ECGs with K+ labs, split, preprocess and write an ECG-K-DIR dataset (resumable)."""
    try:
        config = IngestConfig(
            cohort=CohortConfig(
                window_min=window_min,
                itemids=tuple(int(i) for i in itemids.split(",") if i.strip()),
                balanced_max_per_bin=balanced_max_per_bin,
                seed=seed,
            ),
            preprocess=PreprocessConfig(fs=fs, leads=leads),
            shard_size=shard_size,
        )
        ingestor = Ingestor(ecg_root, hosp_root, out, config, patients_root=patients)
        manifest = ingestor.run(
            workers=workers, cohort_only=cohort_only, progress=progress, overwrite=overwrite, max_shards=max_shards
        )
    except ValidationError as err:
        fail(f"invalid option: {validation_message(err)}")
    except (DataInputError, ValueError) as err:
        fail(str(err))
    print_dataset_summary(out, manifest)


def validation_message(err: ValidationError) -> str:
    """The first problem of a validation error as ``field.path: message`` (for a CLI error line)."""
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def print_dataset_summary(root: Path, manifest: dict[str, Any]) -> None:
    """Counts, skips and label tails of a dataset, as a table."""
    table = Table(title=f"ECG-K-DIR dataset {root} ({manifest['status']})")
    for column in ("split", "pairs", "subjects", "K+ <= 3.5", "K+ >= 5.5", "K+ range"):
        table.add_column(column, justify="right")
    for split in SPLITS:
        hist = manifest["label_histogram"][split]
        values = np.array([float(k) for k in hist], dtype=float)
        counts = np.array(list(hist.values()), dtype=int)
        span = f"{values.min():.1f}-{values.max():.1f}" if len(values) else "-"
        table.add_row(
            split, str(manifest["counts"][split]), str(manifest["subjects"][split]),
            str(int(counts[values <= 3.5 + 1e-9].sum())), str(int(counts[values >= 5.5 - 1e-9].sum())), span,
        )
    console.print(table)
    skipped = ", ".join(f"{k}={v}" for k, v in manifest["skipped"].items()) or "none"
    console.print(f"ECGs in record list: {manifest['ecgs_in_record_list']}; skipped: {skipped}; "
                  f"other pairs of val/test subjects discarded: {manifest['discarded_holdout_pairs']}")


STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
"""A full disk, a file over the size limit, an exhausted quota: reported as such, never as a traceback."""


def main() -> None:
    """Console-script entry point."""
    load_plugins()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except OSError as err:
        if err.errno not in STORAGE_FULL_ERRNOS:
            raise
        where = f" writing {err.filename}" if err.filename else ""
        err_console.print(f"[bold red]error:[/] out of storage{where} ({err.strerror or err}); artefacts already "
                          "written are intact (every file is written to a temporary name first): free space "
                          "and rerun the same command to resume")
        sys.exit(1)
