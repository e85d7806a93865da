"""Ingestion speed and memory, as ratios measured in one run.

1. Records/s of read + QC + preprocess (``ecg_k.data.ingest.process_record``) on one worker, for 12-lead
   500 Hz MIMIC-format records, against a bare ``wfdb.rdrecord`` loop over the same files (targets:
   ratio <= 2, >= 100 records/s).
2. Peak RSS of a full ``ecgk ingest`` (one worker, in a fresh process) for two dataset sizes: O(shard)
   memory shows as a ratio near 1 while the data grows several-fold.

Usage: ``.venv/bin/python benchmarks/ingest.py [--records 400] [--sizes 400 1600] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import wfdb

from ecg_k.data.ingest import process_record
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.synth import generate_dataset


def _record_paths(synth_root: Path, limit: int) -> list[Path]:
    ecg_root = synth_root / "mimic-iv-ecg"
    paths = pd.read_csv(ecg_root / "record_list.csv")["path"].head(limit)
    return [ecg_root / p for p in paths]


def _rate(paths: list[Path], work, repeats: int) -> float:
    """Best-of-``repeats`` records per second of ``work`` over ``paths`` (after one warm-up pass)."""
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
        "from ecg_k.data.ingest import IngestConfig, Ingestor\n"
        "from ecg_k.data.cohort import CohortConfig\n"
        "root = Path(sys.argv[1])\n"
        "config = IngestConfig(cohort=CohortConfig(balanced_max_per_bin=5), shard_size=64)\n"
        "Ingestor(root / 'mimic-iv-ecg', root / 'mimic-iv', Path(sys.argv[2]), config).run(progress=False)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(synth_root), str(out)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400, help="records timed in the speed comparison")
    parser.add_argument("--sizes", type=int, nargs=2, default=[400, 1600], help="two dataset sizes (ECGs)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        small, large = (tmp_dir / f"synth-{n}" for n in args.sizes)
        for root, n in ((small, args.sizes[0]), (large, args.sizes[1])):
            generate_dataset(root, n_ecgs=n, seed=1, workers=2, progress=False)
        paths = _record_paths(large, args.records)

        bare = _rate(paths, lambda p: wfdb.rdrecord(str(p)), args.repeats)
        results = {"records": len(paths), "bare_rdrecord_per_s": round(bare, 1)}
        for leads in ("I", "all"):
            config = PreprocessConfig(leads=leads)
            full = _rate(paths, lambda p, c=config: process_record(p, c), args.repeats)
            results[f"pipeline_leads_{leads}_per_s"] = round(full, 1)
            results[f"time_ratio_pipeline_vs_bare_leads_{leads}"] = round(bare / full, 3)

        rss_small = _peak_rss_of_ingest(small, tmp_dir / "ds-small")
        rss_large = _peak_rss_of_ingest(large, tmp_dir / "ds-large")
        results |= {
            "ingest_sizes_ecgs": args.sizes,
            "peak_rss_mib": [round(rss_small, 1), round(rss_large, 1)],
            "data_ratio": round(args.sizes[1] / args.sizes[0], 2),
            "peak_rss_ratio": round(rss_large / rss_small, 3),
            "this_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
