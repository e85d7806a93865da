"""Ingestion speed and memory, as ratios measured in one run.

1. Records/s of read + QC + preprocess + signal-quality gate (``ecg_k.data.ingest.process_record``) on one
   worker, for 12-lead 500 Hz MIMIC-format records, against a bare ``wfdb.rdrecord`` loop over the same files
   (target >= 100 records/s); and of read + QC + preprocess alone (the pipeline before the signal-quality gate
   was added, target ratio <= 2), with the gate's own cost per record.
2. Peak RSS of a full ``ecgk ingest`` (one worker, in a fresh process) for two dataset sizes: O(shard)
   memory shows as a ratio near 1 while the data grows several-fold.
3. Streaming ``labevents.csv.gz`` (v2.2 columns, 2 % potassium rows): rows/s and peak RSS for two file
   sizes, and the time extrapolated to MIMIC-IV's ~118 M rows.

Usage: ``.venv/bin/python benchmarks/ingest.py [--records 400] [--sizes 400 1600] [--lab-rows 1000000 4000000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ecg_k.data.ingest import process_record, read_and_preprocess
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.quality import QualityError
from ecg_k.signal_quality import SignalQualityConfig
from ecg_k.synth import generate_dataset


def _record_paths(synth_root: Path, limit: int) -> list[Path]:
    ecg_root = synth_root / "mimic-iv-ecg"
    paths = pd.read_csv(ecg_root / "record_list.csv")["path"].head(limit)
    return [ecg_root / p for p in paths]


def _skipping_rejects(work: Callable[[Path], object]) -> Callable[[Path], object]:
    """``work`` that, as ingest does, records a rejected record (QualityError) and goes on: its time counts."""
    def run(path: Path) -> object:
        try:
            return work(path)
        except QualityError as err:
            return err
    return run


def _rate(paths: list[Path], work: Callable[[Path], object], repeats: int) -> float:
    """Best-of-``repeats`` records per second of ``work`` over ``paths`` (after one warm-up pass); records the
    pipeline rejects are timed like the others (they are read and checked, as in a real ingest)."""
    work = _skipping_rejects(work)
    for path in paths[:20]:
        work(path)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            work(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def _peak_rss_of_ingest(synth_root: Path, out: Path) -> float:
    """Peak RSS (MiB) of a full one-worker ingest run in its own process."""
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from ecg_k.data.ingest import Ingestor\nfrom ecg_k.records.dataset import IngestConfig\n"
        "from ecg_k.data.cohort import CohortConfig\n"
        "root = Path(sys.argv[1])\n"
        "config = IngestConfig(cohort=CohortConfig(balanced_max_per_bin=5), shard_size=64)\n"
        "Ingestor(root / 'mimic-iv-ecg', root / 'mimic-iv', Path(sys.argv[2]), config).run(progress=False)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(synth_root), str(out)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def _write_labevents(path: Path, rows: int) -> None:
    """A v2.2-layout labevents.csv.gz of ``rows`` rows, 2 % of them serum K+ (itemid 50971)."""
    rng = np.random.default_rng(0)
    chunk = 500_000
    header = True
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        itemid = np.where(rng.random(n) < 0.02, 50971, rng.choice([50983, 50912, 50902, 51221], n))
        frame = pd.DataFrame({
            "labevent_id": np.arange(start, start + n), "subject_id": rng.integers(10_000_000, 19_999_999, n),
            "hadm_id": "", "specimen_id": rng.integers(1, 99_999_999, n), "itemid": itemid, "order_provider_id": "",
            "charttime": "2180-07-23 08:44:00", "storetime": "2180-07-23 09:30:00",
            "value": np.round(rng.normal(4.2, 0.5, n), 1), "valuenum": np.round(rng.normal(4.2, 0.5, n), 1),
            "valueuom": "mEq/L", "ref_range_lower": 3.3, "ref_range_upper": 5.1, "flag": "", "priority": "ROUTINE",
            "comments": "",
        })
        frame.to_csv(path, mode="w" if header else "a", header=header, index=False,
                     compression={"method": "gzip", "compresslevel": 1})
        header = False


def _lab_stream(path: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of streaming ``path`` for serum K+ in a fresh process."""
    code = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from ecg_k.data.labs import read_potassium_labs\n"
        "start = time.perf_counter()\n"
        "read_potassium_labs(Path(sys.argv[1]), [50971])\n"
        "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    seconds, rss_kib = done.stdout.split()
    return float(seconds), int(rss_kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400, help="records timed in the speed comparison")
    parser.add_argument("--sizes", type=int, nargs=2, default=[400, 1600], help="two dataset sizes (ECGs)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lab-rows", type=int, nargs=2, default=[1_000_000, 4_000_000])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        small, large = (tmp_dir / f"synth-{n}" for n in args.sizes)
        for root, n in ((small, args.sizes[0]), (large, args.sizes[1])):
            generate_dataset(root, n_ecgs=n, seed=1, workers=2, progress=False)
        paths = _record_paths(large, args.records)

        bare = _rate(paths, lambda p: wfdb.rdrecord(str(p)), args.repeats)
        results: dict[str, object] = {"records": len(paths), "bare_rdrecord_per_s": round(bare, 1)}
        full = {}
        for leads in ("I", "all"):
            config = PreprocessConfig(leads=leads)
            full[leads] = _rate(paths, partial(process_record, config=config, gate=SignalQualityConfig()), args.repeats)
            results[f"pipeline_leads_{leads}_per_s"] = round(full[leads], 1)
            results[f"time_ratio_pipeline_vs_bare_leads_{leads}"] = round(bare / full[leads], 3)
        ungated = _rate(paths, partial(read_and_preprocess, config=PreprocessConfig(leads="all")), args.repeats)
        results |= {
            "read_qc_preprocess_leads_all_per_s": round(ungated, 1),
            "time_ratio_read_qc_preprocess_vs_bare_leads_all": round(bare / ungated, 3),
            "target_time_ratio_read_qc_preprocess_vs_bare_leads_all": "<= 2.0",
            "signal_quality_gate_ms_per_record": round(1e3 * (1 / full["all"] - 1 / ungated), 2),
            "target_pipeline_leads_all_per_s": ">= 100",
        }

        rss_small = _peak_rss_of_ingest(small, tmp_dir / "ds-small")
        rss_large = _peak_rss_of_ingest(large, tmp_dir / "ds-large")
        results |= {
            "ingest_sizes_ecgs": args.sizes,
            "peak_rss_mib": [round(rss_small, 1), round(rss_large, 1)],
            "data_ratio": round(args.sizes[1] / args.sizes[0], 2),
            "peak_rss_ratio": round(rss_large / rss_small, 3),
            "this_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        lab_stats = []
        for rows in args.lab_rows:
            path = tmp_dir / f"labevents-{rows}.csv.gz"
            _write_labevents(path, rows)
            lab_stats.append((rows, *_lab_stream(path)))
        (small_rows, small_s, small_rss), (large_rows, large_s, large_rss) = lab_stats
        results |= {
            "labevents_rows": [small_rows, large_rows],
            "labevents_rows_per_s": [round(small_rows / small_s), round(large_rows / large_s)],
            "labevents_peak_rss_mib": [round(small_rss, 1), round(large_rss, 1)],
            "labevents_rss_ratio": round(large_rss / small_rss, 3),
            "labevents_minutes_for_118M_rows": round(118e6 / (large_rows / large_s) / 60, 1),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
