"""Every method on synthetic ECG-K-DIR, several seeds, an equal tuning budget, paired bootstrap CIs.

Protocol (one command; issue 11):

Order: the rows on the vanilla backbone on every seed first, then the others (see :meth:`Benchmark.run`).

1. **Tuning** on seed 0, the same budget for every method: at most :data:`BUDGET` settings from its grid
   (:data:`ROWS`), chosen on **val bMAE only**. Stage-1 methods may tune with fewer epochs
   (``--tune-epochs``); when the tuning epochs equal the final ones the chosen candidate *is* the seed-0 run.
   Stage-2 methods tune on the vanilla (or X) backbone of seed 0. The combinations ``X+dist`` take X's and
   Dist Loss's chosen settings (no search of their own).
2. **Final runs**: the chosen setting of every method on every seed (``--seeds N``, default 3). Stage-2 runs
   start from the stage-1 run of the same seed and reuse its cached backbone features.
3. **Report** on the balanced test set only: per method the mean ± sd over seeds of MAE/GM per region and
   bMAE, and for few-shot MAE, few-shot GM and bMAE the paired bootstrap 95 % CI (over subjects, the seeds'
   mean on each resample) of the difference to vanilla and to Dist Loss. The grid, the choice and every
   candidate's val bMAE are written beside the table (``HOME/comparison/``), with the compute used.

Every run resumes, so the benchmark runs in chunks: ``--max-minutes M`` stops starting new runs after M
minutes; rerun the same command to continue. ``--methods`` restricts the rows (vanilla is always included).

Usage: ``.venv/bin/python benchmarks/accuracy.py [--home .ecgk/accuracy] [--seeds 3] [--max-minutes 40]``; lead I
beside the 12 leads: the same with ``--leads I --home .ecgk/accuracy-lead-i --methods vanilla dist``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecg_k.evaluation.bootstrap import bootstrap_errors, percentile_ci
from ecg_k.evaluation.published import PUBLISHED_FEW_SHOT
from ecg_k.leads import STANDARD_LEADS, parse_leads
from ecg_k.losses import METHODS
from ecg_k.potassium import REGIONS, detection_cutoffs, label_bin
from ecg_k.records.run import read_run_metrics
from training.config import TrainConfig
from training.demo import DemoPlan, prepare_dataset
from training.evaluate import PREDICTIONS, evaluate_run
from training.trainer import Trainer

BUDGET = 3
"""Settings tried per method (the same for all; vanilla and sqrt_inv have nothing to tune)."""
Overrides = dict[str, dict[str, Any]]
DIFFERENCE_KEYS = ("few.mae", "few.gm", "bmae")
"""Test metrics whose paired bootstrap difference to vanilla and to Dist Loss the report gives."""
Differences = dict[tuple[str, str, str], tuple[float, list[float] | None]]
"""(method, reference, metric) -> (mean difference, its 95 % CI or None)."""
PAPER_TIE = 0.02
"""A published few-shot change smaller than this (relative) is read as no effect."""


@dataclass(frozen=True)
class Row:
    """One table row: a trainer method, fixed options, and its tuning grid (each a dict of option groups)."""

    method: str
    fixed: Overrides = field(default_factory=dict)
    grid: tuple[Overrides, ...] = ({},)
    combine: tuple[str, str] | None = None
    """For X+dist rows: (X's row, the Dist Loss row) whose chosen settings are merged instead of a search."""

    @property
    def stage(self) -> int:
        return 1 if METHODS[self.method].phases[0].trains == "all" and len(METHODS[self.method].phases) == 1 else 2


def _bw(*values: float, weighting: str = "none") -> tuple[Overrides, ...]:
    return tuple({"dist": {"bw_method": v, "dist_weighting": weighting}} for v in values)


ROWS: dict[str, Row] = {
    "vanilla": Row("vanilla"),
    "inv": Row("inv", grid=tuple({"weights": {"clip": (lo, 1000.0)}} for lo in (5.0, 1.0, 20.0))),
    "sqrt_inv": Row("sqrt_inv"),
    "lds": Row("lds", grid=tuple({"weights": {"lds_ks": ks, "lds_sigma": sg}}
                                 for ks, sg in ((5, 2.0), (9, 1.0), (5, 1.0)))),
    "fds": Row("fds", grid=tuple({"regularizers": {"fds_ks": ks, "fds_sigma": sg}}
                                 for ks, sg in ((5, 2.0), (9, 1.0), (5, 1.0)))),
    "ranksim": Row("ranksim", grid=tuple({"regularizers": {"ranksim_gamma": g}} for g in (100.0, 10.0, 1.0))),
    "conr": Row("conr", grid=tuple({"regularizers": {"conr_beta": b}} for b in (4.0, 1.0, 0.25))),
    "dist": Row("dist", grid=_bw(0.5, 0.25, 1.0)),
    "dist[pseudo_label]": Row("dist", grid=_bw(0.5, 0.25, 1.0, weighting="pseudo_label")),
    "bmse": Row("bmse", grid=tuple({"regularizers": {"bmse_sigma_scale": s}} for s in (1.0, 0.5, 2.0))),
    "focal": Row("focal", grid=tuple({"focal": {"beta": b}} for b in (2.0, 1.0, 4.0))),
    "srl": Row("srl", grid=tuple({"srl": {"enveloping_weight": w}} for w in (10.0, 3.0, 30.0))),
    "groupdir": Row("groupdir", grid=tuple({"groupdir": {"n_groups": g}} for g in (10, 5, 20))),
    **{f"{x}+dist": Row(f"{x}+dist", combine=(x, "dist"))
       for x in ("lds", "fds", "ranksim", "conr", "bmse", "focal", "srl", "groupdir")},
}
"""Every row of the table with its grid (defaults first). Adding a method = adding a row here."""
STAGE1_SOURCE = {"dist": "vanilla", "dist[pseudo_label]": "vanilla", "bmse": "vanilla", "bmse+dist": "vanilla",
                 "lds+dist": "lds", "fds+dist": "fds", "ranksim+dist": "ranksim", "conr+dist": "conr",
                 "focal+dist": "focal", "srl+dist": "srl", "groupdir+dist": "groupdir"}
"""The stage-1 row whose run a stage-2 row starts from."""


def _merge(*parts: Overrides) -> Overrides:
    out: Overrides = {}
    for part in parts:
        for group, values in part.items():
            out[group] = {**out.get(group, {}), **values}
    return out


def _slug(name: str) -> str:
    return name.replace("+", "_plus_").replace("[", "_").replace("]", "")


class Benchmark:
    """The runs of one benchmark home; every step is skipped when its output exists (resume)."""

    def __init__(self, home: Path, plan: DemoPlan, seeds: int, tune_epochs: int, n_boot: int,
                 deadline: float | None) -> None:
        self.home, self.plan, self.seeds, self.tune_epochs, self.n_boot = home, plan, seeds, tune_epochs, n_boot
        self.deadline = deadline
        self.runs = home / "runs"
        self.choices_path = home / "comparison" / "tuning.json"
        self.choices: dict[str, Any] = json.loads(self.choices_path.read_text()) if self.choices_path.is_file() else {}
        self.data = prepare_dataset(home, plan, replace_stale=False)
        self.trained_s = 0.0
        self.stopped = False

    # -- runs ----------------------------------------------------------------------------------------------
    def _time_left(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stopped = True
        return not self.stopped

    def _train(self, out: Path, row: Row, overrides: Overrides, seed: int, epochs: int | None, init: Path | None
               ) -> bool:
        """Train (or resume) and evaluate one run; False when the time budget stopped it before it ran."""
        if (out / "metrics.json").is_file():
            return True
        if not self._time_left():
            return False
        stage = 2 if init is not None else 1
        batch = self.plan.stage2_batch if stage == 2 else self.plan.stage1_batch
        config = TrainConfig.model_validate({
            "data": self.data, "out": out, "method": row.method, "stage": stage, "init": init,
            "model": self.plan.model, "seed": seed, "epochs": epochs, "batch_size": batch,
            **_merge(row.fixed, overrides)})
        started = time.monotonic()
        print(f"[accuracy] training {out.relative_to(self.home)} (seed {seed}, {epochs} epochs)", flush=True)
        Trainer(config, progress=False).run(resume=True)
        evaluate_run(out, n_boot=200)
        self.trained_s += time.monotonic() - started
        return True

    def _stage1_dir(self, name: str, seed: int) -> Path:
        return self.runs / _slug(name) / f"seed{seed}"

    def _tune(self, name: str) -> Overrides | None:
        """The chosen setting of a row (tuning it on seed 0 first if needed); None when time ran out."""
        if name in self.choices:
            return self.choices[name]["chosen"]
        row = ROWS[name]
        if row.combine is not None:
            parts = [self._tune(part) for part in row.combine]
            if any(part is None for part in parts):
                return None
            chosen = _merge(*parts)  # type: ignore[arg-type]
            self.choices[name] = {"chosen": chosen, "grid": [], "val_bmae": [], "rule": "X's and dist's choices"}
            self._save_choices()
            return chosen
        init = None
        if row.stage == 2:
            source = STAGE1_SOURCE[name]
            if self._tune(source) is None or not self._final(source, 0):
                return None
            init = self._stage1_dir(source, 0)
        if len(row.grid) == 1:  # nothing to tune
            self.choices[name] = {"chosen": row.grid[0], "grid": list(row.grid), "val_bmae": [], "chosen_index": 0}
            self._save_choices()
            return row.grid[0]
        epochs = self.plan.stage2_epochs if row.stage == 2 else self.tune_epochs
        scores = []
        for k, candidate in enumerate(row.grid[:BUDGET]):
            out = self.runs / _slug(name) / f"tune{k}"
            if not self._train(out, row, candidate, 0, epochs, init):
                return None
            scores.append(read_run_metrics(out).splits["val"]["bmae"])
        best = int(np.argmin(scores))
        self.choices[name] = {"chosen": row.grid[best], "grid": list(row.grid[:BUDGET]), "val_bmae": scores,
                              "chosen_index": best, "epochs": epochs, "seed": 0}
        self._save_choices()
        return row.grid[best]

    def _save_choices(self) -> None:
        """Merge this process's choices into the file under a lock, so that several invocations on one home
        (each with its own ``--methods``) can run side by side without dropping each other's choices."""
        self.choices_path.parent.mkdir(parents=True, exist_ok=True)
        with (self.choices_path.parent / ".tuning.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            on_disk = json.loads(self.choices_path.read_text()) if self.choices_path.is_file() else {}
            self.choices = {**on_disk, **self.choices}
            partial = self.choices_path.with_suffix(".json.partial")
            partial.write_text(json.dumps(self.choices, indent=2) + "\n")
            partial.replace(self.choices_path)

    def _final_dir(self, name: str, seed: int) -> Path:
        row = ROWS[name]
        choice = self.choices.get(name, {})
        # The tuning run is the seed-0 run when it was trained on the final schedule: decided from the epochs
        # recorded with the choice, so a later invocation with another --tune-epochs reads the same runs.
        tuned_epochs = choice.get("epochs", self.tune_epochs)
        tuned_full = row.stage == 2 or tuned_epochs == self.plan.stage1_epochs
        if seed == 0 and tuned_full and choice.get("grid") and len(row.grid) > 1:
            return self.runs / _slug(name) / f"tune{choice['chosen_index']}"
        return self.runs / _slug(name) / f"seed{seed}"

    def _final(self, name: str, seed: int) -> bool:
        """The chosen setting of ``name`` trained on ``seed`` (its stage-1 source first)."""
        chosen = self._tune(name)
        if chosen is None:
            return False
        row = ROWS[name]
        init = None
        if row.stage == 2:
            source = STAGE1_SOURCE[name]
            if not self._final(source, seed):
                return False
            init = self._final_dir(source, seed)
        epochs = self.plan.stage2_epochs if row.stage == 2 else self.plan.stage1_epochs
        return self._train(self._final_dir(name, seed), row, chosen, seed, epochs, init)

    def run(self, names: list[str]) -> None:
        """Cheapest evidence first: the rows built on the vanilla backbone (vanilla, Dist Loss, Balanced MSE)
        on every seed, then the other rows seed by seed; an interrupted benchmark resumes where it stopped."""
        on_vanilla = [n for n in names if n == "vanilla" or STAGE1_SOURCE.get(n) == "vanilla"]
        order = [(n, s) for s in range(self.seeds) for n in on_vanilla]
        order += [(n, s) for s in range(self.seeds) for n in names if n not in on_vanilla]
        for name, seed in order:
            self._final(name, seed)
            if self.stopped:
                return

    # -- report --------------------------------------------------------------------------------------------
    def done(self, name: str) -> list[int]:
        return [s for s in range(self.seeds) if (self._final_dir(name, s) / "metrics.json").is_file()]

    def report(self, names: list[str]) -> str:
        complete = [n for n in names if self.done(n)]
        if "vanilla" not in complete:
            return "no finished vanilla run yet"
        records = {(n, s): read_run_metrics(self._final_dir(n, s)) for n in complete for s in self.done(n)}
        regions = records.get(("vanilla", 0), next(iter(records.values()))).regions
        metrics = {key: record.as_dict() for key, record in records.items()}
        test = {key: _test_predictions(self._final_dir(*key)) for key in metrics}
        first = next(iter(test.values()))
        boot = bootstrap_errors(first["y"], {f"{n}|{s}": frame["y_hat"] for (n, s), frame in test.items()},
                                regions, groups=first["subject_id"], n_boot=self.n_boot, seed=0)

        def seed_mean(name: str, key: str) -> np.ndarray:
            return np.mean([boot[f"{name}|{s}"][key] for s in self.done(name)], axis=0)

        differences: Differences = {}
        for name in complete:
            for ref in ("vanilla", "dist"):
                if ref in complete and ref != name:
                    for key in DIFFERENCE_KEYS:
                        delta = seed_mean(name, key) - seed_mean(ref, key)
                        differences[(name, ref, key)] = (float(np.nanmean(delta)), percentile_ci(delta))

        leads = "all 12 leads" if parse_leads(self.plan.leads) == STANDARD_LEADS else f"lead(s) {self.plan.leads}"
        lines = [f"# Accuracy benchmark: balanced test set, {leads}, {self.seeds} seed(s) requested",
                 f"Shot regions: {regions.describe()}. Mean ± sd over the seeds done (n seeds per row).", ""]
        header = ["method", "seeds", *[f"{metric} {r}" for metric in ("MAE", "GM") for r in ("overall", *REGIONS)],
                  "bMAE"]
        table = []
        for name in complete:
            cells = []
            for stat in ("mae", "gm"):
                for region in ("overall", *REGIONS):
                    values = [metrics[(name, s)]["test"][region][stat] for s in self.done(name)]
                    cells.append(_mean_sd(values))
            values = [metrics[(name, s)]["test"]["bmae"] for s in self.done(name)]
            table.append([name, str(len(self.done(name))), *cells, _mean_sd(values)])
        lines += [_md(header, table), ""]
        lines.append("Paired bootstrap 95 % CI (subjects resampled, seeds averaged per resample) of the difference "
                     "method − reference; negative = the method has the lower error.\n")
        diff_header = ["method", *[f"{k} − {ref}" for ref in ("vanilla", "dist")
                                   for k in ("few MAE", "few GM", "bMAE")]]
        diffs = [[name, *(_point_ci(differences.get((name, ref, key))) for ref in ("vanilla", "dist")
                          for key in DIFFERENCE_KEYS)] for name in complete]
        lines += [_md(diff_header, diffs), ""]
        lines += self._directions(complete, metrics, differences)
        lines += self._shrinkage(complete, test)
        lines += self._targets(complete, metrics, differences)
        lines += ["", f"## Tuning (seed 0, val bMAE only; all of it in {self.choices_path.name})", "",
                  _md(["method", "settings tried (val bMAE)", "chosen"], self._tuning_rows(complete))]
        return "\n".join(lines)

    def _tuning_rows(self, complete: list[str]) -> list[list[str]]:
        def setting(overrides: Overrides) -> str:
            return ", ".join(f"{group}.{key}={value}" for group, values in overrides.items()
                             for key, value in values.items()) or "defaults"

        rows = []
        for name in complete:
            choice = self.choices.get(name, {})
            tried = [f"{setting(c)} ({score:.3f})" for c, score in zip(choice.get("grid", []),
                                                                         choice.get("val_bmae", []), strict=False)]
            epochs = f" at {choice.get('epochs') or 'the final'} epochs"
            tried_text = "; ".join(tried) + epochs if tried else choice.get("rule", "nothing to tune")
            rows.append([name, tried_text, setting(choice.get("chosen", {}))])
        return rows

    def _test_mean(self, metrics: Mapping[tuple[str, int], Any], name: str, key: str) -> float:
        """Mean over the seeds done of a test metric, ``key`` as in ``"few.mae"`` or ``"bmae"``."""
        values = []
        for seed in self.done(name):
            value = metrics[(name, seed)]["test"]
            for part in key.split("."):
                value = value[part]
            values.append(value)
        return float(np.mean(values))

    def _directions(self, complete: list[str], metrics: Mapping[tuple[str, int], Any], differences: Differences
                    ) -> list[str]:
        """Each row's few-shot MAE change against vanilla beside the change its paper reports against its own
        vanilla (:data:`PUBLISHED_FEW_SHOT`): the directions are comparable, the datasets are not."""
        vanilla_few = self._test_mean(metrics, "vanilla", "few.mae")
        rows = []
        for name in complete:
            if name == "vanilla":
                continue
            _, ci = differences[(name, "vanilla", "few.mae")]
            ours = _direction(None if ci is None else (ci[0] > 0) - (ci[1] < 0))
            papers = PUBLISHED_FEW_SHOT.get(name, ())
            published = "; ".join(f"{p.change:+.1%} ({p.source})" for p in papers) or "not reported"
            directions = {_direction(-1 if p.change < -PAPER_TIE else int(p.change > PAPER_TIE)) for p in papers}
            agrees = "—" if not papers else "yes" if directions == {ours} else "mixed" if ours in directions else "no"
            change = self._test_mean(metrics, name, "few.mae") / vanilla_few - 1
            rows.append([name, f"{change:+.1%}", ours, published, agrees])
        return [f"Direction of effect on few-shot MAE (ours: the CI of the difference to vanilla; papers: a change "
                f"within ±{PAPER_TIE:.0%} counts as none)", "",
                _md(["method", "ours vs vanilla", "ours", "published vs the paper's vanilla", "same direction"],
                    rows), ""]

    def _shrinkage(self, complete: list[str], test: Mapping[tuple[str, int], pd.DataFrame]) -> list[str]:
        """Why a row helps or not in the tails: how far its test estimates are pulled towards the common K+
        (slope of the estimate on the label, sd ratio) and its mean signed error in each clinical tail."""
        hyper, hypo = detection_cutoffs()
        rows = []
        for name in complete:
            per_seed = []
            for seed in self.done(name):
                y, y_hat = test[(name, seed)]["y"].to_numpy(), test[(name, seed)]["y_hat"].to_numpy()
                error, bins = y_hat - y, label_bin(y)
                per_seed.append((np.polyfit(y, y_hat, 1)[0], y_hat.std() / y.std(),
                                 error[hypo.label_positive(bins)].mean(), error[hyper.label_positive(bins)].mean()))
            slope, sd_ratio, bias_hypo, bias_hyper = np.mean(per_seed, axis=0)
            rows.append([name, f"{slope:.3f}", f"{sd_ratio:.3f}", f"{bias_hypo:+.3f}", f"{bias_hyper:+.3f}"])
        return [f"Pull towards the common K+ on the test set (means over seeds; 1, 1, 0, 0 = none): the slope of "
                f"the estimate on the label, sd(estimate) / sd(label), and the mean signed error where "
                f"{hypo.describe()} and where {hyper.describe()}", "",
                _md(["method", "slope", "sd ratio", "bias hypo", "bias hyper"], rows), ""]

    def _targets(self, complete: list[str], metrics: Mapping[tuple[str, int], Any], differences: Differences
                 ) -> list[str]:
        if "dist" not in complete:
            return ["Targets: Dist Loss not finished yet."]
        few = {n: self._test_mean(metrics, n, "few.mae") for n in complete}
        bmae = {n: self._test_mean(metrics, n, "bmae") for n in complete}
        ratio_few = few["dist"] / few["vanilla"]
        ratio_all = self._test_mean(metrics, "dist", "overall.mae") / self._test_mean(metrics, "vanilla", "overall.mae")
        _, ci = differences[("dist", "vanilla", "few.mae")]
        dist_rows = [n for n in complete if "dist" in n]
        best_few, best_bmae = min(few, key=few.__getitem__), min(bmae, key=bmae.__getitem__)
        return [
            "## Targets (issue 11)",
            f"- lowest few-shot MAE: {best_few} ({few[best_few]:.3f}); a Dist Loss row: {best_few in dist_rows}",
            f"- lowest bMAE: {best_bmae} ({bmae[best_bmae]:.3f}); a Dist Loss row: {best_bmae in dist_rows}",
            f"- few-shot MAE dist / vanilla = {ratio_few:.3f} (target <= 0.75); CI of the difference "
            f"{'—' if ci is None else f'[{ci[0]:+.3f}, {ci[1]:+.3f}]'} (target: excludes 0)",
            f"- overall MAE dist / vanilla = {ratio_all:.3f} (target <= 1.0)",
        ]


def _point_ci(difference: tuple[float, list[float] | None] | None) -> str:
    if difference is None or difference[1] is None:
        return "—"
    point, (lo, hi) = difference[0], difference[1]
    return f"{point:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _direction(sign: int | None) -> str:
    return {None: "—", -1: "helps", 0: "no clear effect", 1: "hurts"}[sign]


def _test_predictions(run: Path) -> pd.DataFrame:
    frame = pd.read_parquet(run / PREDICTIONS)
    return frame[frame["split"] == "test"].sort_values("study_id").reset_index(drop=True)


def _mean_sd(values: list[float | None]) -> str:
    clean = [v for v in values if v is not None]
    if not clean:
        return "—"
    sd = float(np.std(clean, ddof=1)) if len(clean) > 1 else float("nan")
    return f"{np.mean(clean):.3f} ± {sd:.3f}" if len(clean) > 1 else f"{clean[0]:.3f}"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(".ecgk/accuracy"))
    parser.add_argument("--n-ecgs", type=int, default=DemoPlan.n_ecgs)
    parser.add_argument("--leads", default=DemoPlan.leads,
                        help="leads ingested and modelled: all 12 (default) or e.g. I for a wearable; use its own "
                             "--home, the table names the leads")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=list(ROWS), help=f"rows, from: {', '.join(ROWS)}")
    parser.add_argument("--stage1-epochs", type=int, default=DemoPlan.stage1_epochs)
    parser.add_argument("--stage2-epochs", type=int, default=DemoPlan.stage2_epochs)
    parser.add_argument("--tune-epochs", type=int, default=None, help="stage-1 tuning epochs (default: final)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, default=None, help="start no new run after this long")
    args = parser.parse_args()
    unknown = [m for m in args.methods if m not in ROWS]
    if unknown or args.seeds < 1:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(ROWS)}" if unknown
                     else "--seeds must be >= 1")
    started = time.monotonic()
    deadline = None if args.max_minutes is None else started + 60 * args.max_minutes
    try:
        leads = parse_leads(args.leads)
    except ValueError as err:
        parser.error(f"--leads: {err}")
    plan = DemoPlan(n_ecgs=args.n_ecgs, stage1_epochs=args.stage1_epochs, stage2_epochs=args.stage2_epochs,
                    leads=",".join(leads))
    try:
        bench = Benchmark(args.home, plan, args.seeds, args.tune_epochs or args.stage1_epochs, args.n_boot, deadline)
    except FileExistsError as err:
        parser.exit(2, f"accuracy.py: error: --home: {err}; its runs are kept: use another --home or delete it\n")
    names = ["vanilla", *[m for m in ROWS if m in args.methods and m != "vanilla"]]
    bench.run(names)
    text = bench.report(names)
    elapsed = time.monotonic() - started
    text += (f"\n\nCompute this invocation: {elapsed / 60:.1f} min wall ({bench.trained_s / 60:.1f} min training + "
             "evaluation), on this machine's CPU.")
    if bench.stopped:
        text += "\n\n**Incomplete** (time budget reached): rerun the same command to continue."
    out = args.home / "comparison" / "accuracy.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
