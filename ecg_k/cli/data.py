"""``ecgk synth`` and ``ecgk ingest``: the synthetic dataset in MIMIC layout, and a dataset directory built from
MIMIC-IV (or that layout), with the summary tables both print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from pydantic import ValidationError
from rich.table import Table

from ecg_k.cli.options import parse_int_list, validation_message
from ecg_k.cli.output import console, err_console, fail
from ecg_k.data.cohort import HEMOLYSED_LAB_MODES, CohortConfig
from ecg_k.data.errors import DataInputError
from ecg_k.data.ingest import Ingestor
from ecg_k.data.splits import SPLITS
from ecg_k.potassium import detection_cutoffs, label_bin
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.dataset import DatasetManifest, IngestConfig
from ecg_k.settings import get_settings


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


def ingest(
    ecg_root: Annotated[Path, typer.Option(help="MIMIC-IV-ECG root (holds record_list.csv).")],
    hosp_root: Annotated[Path, typer.Option(help="MIMIC-IV hosp dir (or its parent, or a labevents file).")],
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")],
    window_min: Annotated[float, typer.Option(help="Pairing window, minutes either side.")] = 60.0,
    leads: Annotated[str, typer.Option(
        help="Leads by name, comma-separated ('I', 'I,II' for wearables), or 'all' (the 12 leads).")] = "all",
    fs: Annotated[float, typer.Option(help="Output sampling rate (Hz).")] = 500.0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = get_settings().workers,
    seed: Annotated[int, typer.Option(help="Seed of the balanced split.")] = get_settings().seed,
    itemids: Annotated[str, typer.Option(help="K+ itemids, comma-separated (50822 = whole blood).")] = "50971",
    balanced_max_per_bin: Annotated[int | None, typer.Option(
        help="Cap on val (and on test) pairs per 0.1 bin (default: the largest cap <= 100 that keeps val + test "
             "within --balanced-max-fraction of the pairs).")] = None,
    balanced_max_fraction: Annotated[float, typer.Option(
        help="Share of the pairs that val + test may take (cal is half of the val draw).")] = 0.10,
    natural_test_fraction: Annotated[float, typer.Option(
        help="Share of subjects drawn first, at random, into test_natural (real prevalence).")] = 0.05,
    shard_size: Annotated[int, typer.Option(help="Records per resumable shard.")] = 256,
    patients: Annotated[Path | None, typer.Option(help="Dir with patients.csv[.gz] if not in hosp root.")] = None,
    hemolysed_labs: Annotated[str, typer.Option(
        help="Labs whose comment says haemolysed: exclude (never a label; the nearest valid lab wins), keep "
             "(pair as if no comment), flag (keep and report them).")] = "exclude",
    cohort_only: Annotated[bool, typer.Option("--cohort-only", help="Stop after pairing and splitting.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a different dataset in --out.")] = False,
    max_shards: Annotated[int | None, typer.Option(help="Process at most N shards, then stop (resumable).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pair ECGs with K+ labs, split, preprocess and write an ECG-K-DIR dataset (resumable)."""
    if hemolysed_labs not in HEMOLYSED_LAB_MODES:
        fail(f"--hemolysed-labs must be one of {', '.join(HEMOLYSED_LAB_MODES)}, got {hemolysed_labs!r}")
    try:
        config = IngestConfig(
            cohort=CohortConfig(
                window_min=window_min,
                itemids=parse_int_list(itemids, "--itemids"),
                balanced_max_per_bin=balanced_max_per_bin,
                balanced_max_fraction=balanced_max_fraction,
                natural_test_fraction=natural_test_fraction,
                seed=seed,
                hemolysed_labs=hemolysed_labs,
            ),
            preprocess=PreprocessConfig(fs=fs, leads=leads),
            shard_size=shard_size,
        )
        ingestor = Ingestor(ecg_root, hosp_root, out, config, patients_root=patients)
        manifest = ingestor.run(
            workers=workers, cohort_only=cohort_only, progress=progress, overwrite=overwrite, max_shards=max_shards
        )
    except ValidationError as err:
        fail(validation_message(err, ingest))
    except (DataInputError, ValueError) as err:
        fail(str(err))
    print_dataset_summary(out, manifest)


def print_dataset_summary(root: Path, manifest: DatasetManifest) -> None:
    """Counts, skips and label tails of a dataset, and pairs per 0.1 bin and split, as tables; share warnings."""
    if manifest.per_bin:
        print_per_bin(manifest.per_bin)
    table = Table(title=f"ECG-K-DIR dataset {root} ({manifest.status})")
    hyper, hypo = detection_cutoffs()
    tails = (f"K+ {hypo.op} {hypo.value:g}", f"K+ {hyper.op} {hyper.value:g}")
    for column in ("split", "pairs", "subjects", *tails, "K+ range"):
        table.add_column(column, justify="right")
    subjects = manifest.subjects or {}
    for split in (s for s in SPLITS if s in manifest.counts):
        hist = manifest.label_histogram[split]
        values = np.array([float(k) for k in hist], dtype=float)
        counts = np.array(list(hist.values()), dtype=int)
        span = f"{values.min():.1f}-{values.max():.1f}" if len(values) else "-"
        table.add_row(
            split, str(manifest.counts[split]), str(subjects.get(split, "-")),
            str(int(counts[hypo.label_positive(label_bin(values))].sum())),
            str(int(counts[hyper.label_positive(label_bin(values))].sum())), span,
        )
    console.print(table)
    skipped = ", ".join(f"{k}={v}" for k, v in (manifest.skipped or {}).items()) or "none"
    console.print(f"ECGs in record list: {manifest.ecgs_in_record_list}; skipped: {skipped}; "
                  f"other pairs of val/cal/test subjects discarded: {manifest.discarded_holdout_pairs}")
    for warning in manifest.warnings or []:
        err_console.print(f"[bold yellow]warning:[/] {warning}")
    print_lab_comment_summary(manifest)


def print_lab_comment_summary(manifest: DatasetManifest) -> None:
    """One line on haemolysed labs: how many K+ rows, and what the pairing did with the ECGs they labelled."""
    comments = manifest.lab_comments
    if comments is None:
        return
    rows = comments["lab_rows"]
    outcomes = {k: sum(v.values()) for k, v in comments["hemolysed_pairs_per_bin"].items()}
    done = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none nearest to an ECG"
    line = (f"K+ lab comments: {rows['hemolysed']} haemolysed, {rows['verified']} verified, "
            f"{rows['unrecognised']} unrecognised (read as none); "
            f"--hemolysed-labs {comments['hemolysed_labs']}: ECGs whose nearest lab was haemolysed: {done}")
    if comments["hemolysed_labs"] == "flag" and outcomes.get("kept"):
        err_console.print(f"[bold yellow]warning:[/] {line}; these pairs are labelled with haemolysed K+ "
                          "(k_comment = hemolysed in cohort.parquet)")
    else:
        console.print(line)


def print_per_bin(per_bin: dict[str, dict[str, int]]) -> None:
    """Pairs per 0.1 mmol/L bin in each split and discarded, with train's share of the bin."""
    table = Table(title="pairs per K+ bin (mmol/L)")
    columns = list(next(iter(per_bin.values())))
    for column in ("K+", *columns, "train share"):
        table.add_column(column, justify="right")
    for label, counts in per_bin.items():
        total = sum(counts.values())
        table.add_row(label, *(str(counts[c]) for c in columns), f"{counts['train'] / total:.0%}")
    console.print(table)
