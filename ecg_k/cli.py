"""The ``ecgk`` command line (Typer). Data commands live here; later packages add theirs."""

from __future__ import annotations

import errno
import functools
import inspect
import json
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecg_k.data.cohort import HEMOLYSED_LAB_MODES, CohortConfig, HemolysedLabs
from ecg_k.data.errors import DataInputError
from ecg_k.data.ingest import IngestConfig, Ingestor
from ecg_k.data.splits import SPLITS
from ecg_k.db.cli import audit_app, db_app, keys_app, models_app
from ecg_k.potassium import detection_cutoffs, label_bin
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.settings import get_settings
from ecg_k.version import code_version

app = typer.Typer(
    name="ecgk", help="ecg-k: blood potassium from the ECG.", no_args_is_help=True, add_completion=False
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")


COMMAND_EXTRAS = {
    **dict.fromkeys(("train", "evaluate", "export", "compare", "retrain"), "train"),
    "serve": "service", "dashboard": "dashboard", "demo": "all",
    **dict.fromkeys(("db", "keys", "models"), "db"),
}
"""The pip extra (pyproject.toml) each command needs beyond the base install."""
OWN_PACKAGES = frozenset({"ecg_k", "training", "service", "dashboard"})


def version_line() -> str:
    """``ecg-k 0.1.0 (code 1a2b3c4d5e6f-dirty)``: the package version and the git commit it runs from."""
    version = code_version()
    commit = version["git_commit"]
    if not commit:
        return f"ecg-k {version['package']} (code: installed package, no git checkout)"
    return f"ecg-k {version['package']} (code {str(commit)[:12]}{'-dirty' if version['git_dirty'] else ''})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Show the package and code version and exit.")] = False,
) -> None:
    """ecg-k: blood potassium from the ECG."""


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"50971,50822"`` -> ``(50971, 50822)``; a CLI error naming ``option`` for anything else."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"invalid option {option}: expected comma-separated integers, got {text!r}")


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


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error and exit non-zero (never a traceback for bad input)."""
    print_error(message)
    raise typer.Exit(code)


def print_error(message: str) -> None:
    """``error: message`` on stderr, on one line (the message is text, never markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")


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
                hemolysed_labs=cast(HemolysedLabs, hemolysed_labs),
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


def validation_message(err: ValidationError, command: Callable[..., object]) -> str:
    """The first problem of a validation error as a CLI error line, ``invalid option OPTION: message``.

    The option is ``command``'s ``--name`` for a field of that name (nested or not), else ``-o field.path``
    when ``command`` takes ``-o`` overrides (a parameter ``option``); a rule across fields names no option.
    """
    first = err.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    path = [str(part) for part in first["loc"]]
    if not path:
        return f"invalid options: {message}"
    parameters = inspect.signature(command).parameters
    if path[-1] in parameters:
        return f"invalid option --{path[-1].replace('_', '-')}: {message}"
    if "option" in parameters:
        return f"invalid option -o {'.'.join(path)}: {message}"
    return f"invalid option {'.'.join(path)}: {message}"


def print_dataset_summary(root: Path, manifest: dict[str, Any]) -> None:
    """Counts, skips and label tails of a dataset, and pairs per 0.1 bin and split, as tables; share warnings."""
    if manifest.get("per_bin"):
        print_per_bin(manifest["per_bin"])
    table = Table(title=f"ECG-K-DIR dataset {root} ({manifest['status']})")
    hyper, hypo = detection_cutoffs()
    tails = (f"K+ {hypo.op} {hypo.value:g}", f"K+ {hyper.op} {hyper.value:g}")
    for column in ("split", "pairs", "subjects", *tails, "K+ range"):
        table.add_column(column, justify="right")
    for split in (s for s in SPLITS if s in manifest["counts"]):
        hist = manifest["label_histogram"][split]
        values = np.array([float(k) for k in hist], dtype=float)
        counts = np.array(list(hist.values()), dtype=int)
        span = f"{values.min():.1f}-{values.max():.1f}" if len(values) else "-"
        table.add_row(
            split, str(manifest["counts"][split]), str(manifest["subjects"][split]),
            str(int(counts[hypo.label_positive(label_bin(values))].sum())),
            str(int(counts[hyper.label_positive(label_bin(values))].sum())), span,
        )
    console.print(table)
    skipped = ", ".join(f"{k}={v}" for k, v in manifest["skipped"].items()) or "none"
    console.print(f"ECGs in record list: {manifest['ecgs_in_record_list']}; skipped: {skipped}; "
                  f"other pairs of val/cal/test subjects discarded: {manifest['discarded_holdout_pairs']}")
    for warning in manifest.get("warnings", []):
        err_console.print(f"[bold yellow]warning:[/] {warning}")
    print_lab_comment_summary(manifest)


def print_lab_comment_summary(manifest: dict[str, Any]) -> None:
    """One line on haemolysed labs: how many K+ rows, and what the pairing did with the ECGs they labelled."""
    comments = manifest.get("lab_comments")
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
    except ModuleNotFoundError as err:
        missing = (err.name or "").partition(".")[0]
        if not missing or missing in OWN_PACKAGES:
            raise
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        extra = COMMAND_EXTRAS.get(command, "all")
        print_error(f"`ecgk {command}` needs the '{extra}' extra ({missing} is not installed): "
                    f"pip install 'ecg-k[{extra}]'")
        sys.exit(2)
    except OSError as err:
        if err.errno not in STORAGE_FULL_ERRNOS:
            raise
        where = f" writing {err.filename}" if err.filename else ""
        err_console.print(f"[bold red]error:[/] out of storage{where} ({err.strerror or err}); artefacts already "
                          "written are intact (every file is written to a temporary name first): free space "
                          "and rerun the same command to resume")
        sys.exit(1)
