"""Synthetic generation speed: ``wfdb.wrsamp`` against the lean writer (``ecg_k.synth.wfdb16``), in one run.

Per ECG it times the simulation (``simulate_ecg`` + ``to_digital``), writing the record with ``wfdb.wrsamp`` (the
writer the generator used before) and with the lean writer, alternately on the same signals, and prints the
generation rate (one worker) with each writer and their ratio beside the target (>= 2x). It also times a full
``generate_dataset`` run for the ECG/s a user sees.

Usage: ``.venv/bin/python benchmarks/synth.py [--ecgs 200]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import wfdb

from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.synth import generate_dataset, wfdb16
from ecg_k.synth.ecg_model import draw_subject, simulate_ecg, to_digital
from ecg_k.synth.params import SynthParams


def _wrsamp(out: Path, name: str, digital: np.ndarray, params: SynthParams, when: dt.datetime) -> None:
    n = len(MIMIC_LEAD_ORDER)
    wfdb.wrsamp(name, fs=params.fs, units=["mV"] * n, sig_name=list(MIMIC_LEAD_ORDER), d_signal=digital,
                fmt=["16"] * n, adc_gain=[params.gain_adu_per_mv] * n, baseline=[0] * n, base_time=when.time(),
                base_date=when.date(), comments=["<subject_id>: 10000032"], write_dir=str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ecgs", type=int, default=200, help="ECGs simulated and written")
    args = parser.parse_args()
    params, when = SynthParams(), dt.datetime(2180, 7, 23, 8, 44)
    simulate_s, wrsamp_s, lean_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for i in range(args.ecgs):
            rng = np.random.default_rng([0, i])
            start = time.perf_counter()
            digital = to_digital(simulate_ecg(draw_subject(rng, params.morphology), 4.2, rng, params).signal,
                                 params.gain_adu_per_mv)
            simulated = time.perf_counter()
            _wrsamp(out, f"w{i}", digital, params, when)
            written = time.perf_counter()
            wfdb16.write_record(out, f"l{i}", digital, params.fs, params.gain_adu_per_mv, "mV", MIMIC_LEAD_ORDER,
                                when, ["<subject_id>: 10000032"])
            lean = time.perf_counter()
            simulate_s.append(simulated - start)
            wrsamp_s.append(written - simulated)
            lean_s.append(lean - written)
        start = time.perf_counter()
        generate_dataset(out / "dataset", n_ecgs=args.ecgs, seed=1, workers=1, progress=False)
        dataset_s = time.perf_counter() - start
    simulate, wrsamp_ms, lean_ms = (1e3 * statistics.median(v) for v in (simulate_s, wrsamp_s, lean_s))
    print(json.dumps({
        "ecgs": args.ecgs,
        "median_ms_simulate": round(simulate, 2),
        "median_ms_write_wrsamp": round(wrsamp_ms, 2),
        "median_ms_write_lean": round(lean_ms, 2),
        "ecg_per_s_with_wrsamp": round(1e3 / (simulate + wrsamp_ms), 1),
        "ecg_per_s_with_lean_writer": round(1e3 / (simulate + lean_ms), 1),
        "generation_speedup": round((simulate + wrsamp_ms) / (simulate + lean_ms), 2),
        "target_generation_speedup": ">= 2.0",
        "generate_dataset_ecg_per_s": round(args.ecgs / dataset_s, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
