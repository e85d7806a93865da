"""The synthetic cohort as tables: subjects, ECG times and true K+, and the MIMIC-IV hosp tables.

Everything here is drawn from one generator seeded by ``(seed, PLAN_STREAM)``, vectorised, before any
waveform is made (haemolysed draws and the lab comments from a second one, ``(seed, COMMENT_STREAM)``, so
adding them left every other table value as it was); the waveform of ECG ``i`` then depends only on
``(seed, i)`` and its subject, so the output does not depend on how ECGs are spread over processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecg_k.synth.params import Population

PLAN_STREAM = 0
COMMENT_STREAM = 3  # 1: subjects, 2: waveforms (dataset.py)
SERUM_POTASSIUM = 50971
WHOLE_BLOOD_POTASSIUM = 50822
MISSING_TEXT = "___"  # MIMIC's de-identified free text
PATIENTS_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
LABEVENTS_COLUMNS = (
    "labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id", "charttime",
    "storetime", "value", "valuenum", "valueuom", "ref_range_lower", "ref_range_upper", "flag", "priority",
    "comments",
)
_ANCHOR_YEARS = (2110, 2200)  # shifted years, as in MIMIC (pandas' ns range ends in 2262)
_ANCHOR_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")
_FIRST_ECG_WITHIN_DAYS = 3 * 365
_MIN_GAP_MIN = 15
_NEW_STAY_MIN_GAP_DAYS = 3
_BACKGROUND_DAYS = (2.0, 30.0)  # background K+ panels this far from an ECG of the subject ...
_BACKGROUND_CLEARANCE_MIN = 8 * 60  # ... and never closer than this to any of its ECGs
_WHOLE_BLOOD_WINDOW_MIN = 90
_STORE_DELAY_MIN = (20, 150)
_N_PROVIDERS = 200
_P_NO_PROVIDER = 0.4
_P_STAT = 0.6
_HAEMOLYSED_VALUES = (12.5, 0.8)
_SPECIMEN_IDS = (1_000_000, 89_000_000)  # (low, span) of specimen ids; the haemolysed draws' come after
# comments as MIMIC-IV writes them on K+ rows (two trailing spaces after each sentence)
HEMOLYSIS_COMMENTS = (
    "HEMOLYSIS FALSELY ELEVATES K..  ", "Hemolysis falsely elevates this test.  ",
    "Hemolysis falsely elevates this test.  New reference range as of ___.  ",
)
VERIFIED_COMMENTS = (
    "VERIFIED.  NOT HEMOLYZED.  ", "Specimen not Hemolyzed.  ", "VERIFIED.  NO HEMOLYSIS.  ",
    "VERIFIED.  NO HEMOLYSIS PRESENT.  ", "VERIFIED BY REPLICATE ANALYSIS.  ",
    "VERIFIED BY ALTERNATE METHODOLOGY.  ",
)
_REFERENCE_NOTICE = "New reference range as of ___.  "
_TUBE_NOTICES = ("GREEN TOP.  ", "GREEN TOP TUBE.  ", "GREENTOP.  ")
_HIGH_K = 5.5


@dataclass(frozen=True)
class _Analyte:
    """One lab test of a serum panel: how its value is drawn and printed."""

    itemid: int
    uom: str
    ref_ranges: tuple[tuple[float, float], ...]
    ref_p: tuple[float, ...]
    centre: float
    spread: float
    lognormal: bool
    decimals: int


_SERUM_K = _Analyte(
    SERUM_POTASSIUM, "mEq/L", ((3.3, 5.1), (3.5, 5.3), (3.5, 5.4)), (0.8, 0.1, 0.1), 0, 0, False, 1
)
_WHOLE_BLOOD_K = _Analyte(WHOLE_BLOOD_POTASSIUM, "mEq/L", ((3.5, 5.3),), (1.0,), 0, 0, False, 1)
_DISTRACTORS = (
    _Analyte(50983, "mEq/L", ((133.0, 145.0),), (1.0,), 139.0, 3.5, False, 0),  # sodium
    _Analyte(50902, "mEq/L", ((96.0, 108.0),), (1.0,), 102.0, 3.5, False, 0),  # chloride
    _Analyte(50912, "mg/dL", ((0.5, 1.2), (0.4, 1.1)), (0.5, 0.5), 0.9, 0.35, True, 1),  # creatinine
)


@dataclass(frozen=True)
class Plan:
    """The tables of one dataset. ``ecgs`` is in record_list order and carries the true K+ per ECG."""

    ecgs: pd.DataFrame  # subject_index, subject_id, study_id, ecg_time (datetime64[m]), k_true, path
    patients: pd.DataFrame  # PATIENTS_COLUMNS
    labevents: pd.DataFrame  # LABEVENTS_COLUMNS, every cell already formatted as MIMIC prints it


def format_time(times: np.ndarray) -> np.ndarray:
    """``datetime64`` -> ``YYYY-MM-DD HH:MM:SS`` strings (MIMIC's form)."""
    return np.char.replace(np.datetime_as_string(times.astype("datetime64[s]"), unit="s"), "T", " ")


def _minutes(values: np.ndarray) -> np.ndarray:
    """Minutes (float) -> ``timedelta64[m]``, rounded: MIMIC times are to the minute."""
    minutes: np.ndarray = np.rint(values).astype(np.int64).astype("timedelta64[m]")
    return minutes


def _unique_ids(rng: np.random.Generator, low: int, n: int, span: int = 10_000_000) -> np.ndarray:
    """``n`` distinct integers in ``[low, low + span)``, in random order."""
    return low + rng.choice(span, size=n, replace=False)


def _ecgs_per_subject(rng: np.random.Generator, n_ecgs: int, pop: Population) -> np.ndarray:
    """ECG counts per subject, 1 + Poisson, summing exactly to ``n_ecgs`` (the last one truncated)."""
    counts = 1 + rng.poisson(pop.ecgs_per_subject_extra, size=n_ecgs)
    total = np.cumsum(counts)
    n_subjects = int(np.searchsorted(total, n_ecgs) + 1)
    counts = counts[:n_subjects]
    counts[-1] -= total[n_subjects - 1] - n_ecgs
    return counts


@dataclass(frozen=True)
class _Subjects:
    """Per-subject arrays, subjects sorted by id."""

    ids: np.ndarray
    k_mean: np.ndarray
    anchor_year: np.ndarray
    counts: np.ndarray
    first_ecg: np.ndarray  # index of each subject's first ECG


def _draw_subjects(rng: np.random.Generator, n_ecgs: int, pop: Population) -> _Subjects:
    """Subject ids, K+ means from the mixture, anchor years and ECG counts."""
    counts = _ecgs_per_subject(rng, n_ecgs, pop)
    n = counts.size
    weights, means, sds = np.asarray(pop.k_mixture, dtype=np.float64).T
    component = rng.choice(weights.size, size=n, p=weights / weights.sum())
    return _Subjects(
        ids=np.sort(_unique_ids(rng, 10_000_000, n)),
        k_mean=rng.normal(means[component], sds[component]),
        anchor_year=rng.integers(_ANCHOR_YEARS[0], _ANCHOR_YEARS[1] + 1, size=n),
        counts=counts,
        first_ecg=np.concatenate(([0], np.cumsum(counts)[:-1])),
    )


def _draw_ecgs(
    rng: np.random.Generator, subjects: _Subjects, pop: Population
) -> tuple[pd.DataFrame, np.ndarray]:
    """ECG rows (sorted by subject, then time) and each ECG's hadm_id (-1: outpatient / ED)."""
    n = int(subjects.counts.sum())
    subject_index = np.repeat(np.arange(subjects.counts.size), subjects.counts)
    first = np.zeros(n, dtype=bool)
    first[subjects.first_ecg] = True
    same_stay = (rng.random(n) < pop.p_same_stay) & ~first
    gap = np.where(
        same_stay,
        np.maximum(_MIN_GAP_MIN, rng.exponential(pop.same_stay_gap_h * 60.0, n)),
        rng.exponential(pop.new_stay_gap_days * 1440.0, n) + _NEW_STAY_MIN_GAP_DAYS * 1440.0,
    )
    gap = np.rint(np.where(first, 0.0, gap))
    elapsed = np.cumsum(gap)
    elapsed -= elapsed[subjects.first_ecg][subject_index]
    year_start = (subjects.anchor_year - 1970).astype("datetime64[Y]").astype("datetime64[m]")
    start = year_start + _minutes(rng.uniform(0.0, _FIRST_ECG_WITHIN_DAYS * 1440.0, subjects.counts.size))
    ecg_time = start[subject_index] + _minutes(elapsed)

    stay = np.cumsum(~same_stay) - 1
    n_stays = int(stay[-1]) + 1
    outpatient = rng.random(n_stays) < pop.p_outpatient_stay
    stay_hadm = np.where(outpatient, -1, _unique_ids(rng, 20_000_000, n_stays))

    k_true = np.clip(rng.normal(subjects.k_mean[subject_index], pop.k_within_sd), *pop.k_clip)
    study_id = _unique_ids(rng, 40_000_000, n)
    subject_id = subjects.ids[subject_index]
    pairs = zip(subject_id.tolist(), study_id.tolist(), strict=True)
    path = [f"files/p{subject // 10_000}/p{subject}/s{study}/{study}" for subject, study in pairs]
    ecgs = pd.DataFrame(
        {"subject_index": subject_index, "subject_id": subject_id, "study_id": study_id,
         "ecg_time": ecg_time, "k_true": k_true, "path": path}
    )
    return ecgs, stay_hadm[stay]


def _draw_patients(
    rng: np.random.Generator, subjects: _Subjects, ecgs: pd.DataFrame, pop: Population
) -> pd.DataFrame:
    """The ``patients`` table; a date of death, when drawn, falls after the subject's last ECG."""
    n = subjects.ids.size
    last_ecg = ecgs["ecg_time"].to_numpy().astype("datetime64[m]")[subjects.first_ecg + subjects.counts - 1]
    dies = rng.random(n) < pop.p_dod
    dod = (last_ecg + _minutes(rng.uniform(1.0, 400.0, n) * 1440.0)).astype("datetime64[D]")
    return pd.DataFrame(
        {
            "subject_id": subjects.ids,
            "gender": rng.choice(np.array(["F", "M"]), n),
            "anchor_age": rng.integers(18, 92, n),
            "anchor_year": subjects.anchor_year,
            "anchor_year_group": rng.choice(np.array(_ANCHOR_YEAR_GROUPS), n),
            "dod": np.where(dies, np.datetime_as_string(dod), ""),
        }
    )


@dataclass(frozen=True)
class _Specimens:
    """One row per blood specimen: whose, when, which stay, serum or blood gas, and the K+ before noise."""

    subject_index: np.ndarray
    time: np.ndarray  # datetime64[m]
    hadm: np.ndarray
    blood_gas: np.ndarray
    k: np.ndarray

    @staticmethod
    def concat(parts: list[_Specimens]) -> _Specimens:
        """Stack specimen tables field by field."""
        fields = _Specimens.__dataclass_fields__
        return _Specimens(*(np.concatenate([getattr(part, f) for part in parts]) for f in fields))


def _ecg_specimens(
    rng: np.random.Generator, ecgs: pd.DataFrame, hadm: np.ndarray, pop: Population
) -> _Specimens:
    """K+ labs around each ECG: one near (most), two near with different values, or one far away."""
    n = len(ecgs)
    subject = ecgs["subject_index"].to_numpy()
    time = ecgs["ecg_time"].to_numpy().astype("datetime64[m]")
    k_true = ecgs["k_true"].to_numpy()
    draw = rng.random(n)
    two = draw < pop.p_two_labs
    far = (draw >= pop.p_two_labs) & (draw < pop.p_two_labs + pop.p_far_lab)
    near_delta = np.clip(np.rint(rng.normal(0.0, pop.near_delta_sd_min, n)), -59, 59)
    far_delta = rng.choice([-1.0, 1.0], n) * rng.uniform(*pop.far_delta_min, n)
    delta = np.where(far, far_delta, near_delta)
    value = k_true + rng.normal(0.0, pop.lab_noise_sd, n) + far * rng.normal(0.0, pop.lab_drift_sd, n)
    primary = _Specimens(subject, time + _minutes(delta), hadm, np.zeros(n, dtype=bool), value)

    second_delta = near_delta - np.where(near_delta >= 0, 1.0, -1.0) * rng.integers(5, 41, n)
    second_value = value + rng.choice([-1.0, 1.0], n) * rng.uniform(0.2, 0.6, n)  # >= 0.1 apart once rounded
    second = _Specimens(subject[two], (time + _minutes(second_delta))[two], hadm[two],
                        np.zeros(int(two.sum()), dtype=bool), second_value[two])

    gas = rng.random(n) < pop.p_whole_blood
    gas_delta = rng.integers(-_WHOLE_BLOOD_WINDOW_MIN, _WHOLE_BLOOD_WINDOW_MIN + 1, n)
    gas_value = k_true + rng.normal(0.0, pop.whole_blood_noise_sd, n)
    whole_blood = _Specimens(subject[gas], (time + _minutes(gas_delta))[gas], hadm[gas],
                             np.ones(int(gas.sum()), dtype=bool), gas_value[gas])
    return _Specimens.concat([primary, second, whole_blood])


def _background_specimens(
    rng: np.random.Generator, subjects: _Subjects, ecgs: pd.DataFrame, pop: Population
) -> _Specimens:
    """Serum panels days away from any ECG of the subject (they never pair, but a reader must skip them)."""
    per_subject = rng.poisson(pop.background_labs_per_subject, subjects.ids.size)
    subject = np.repeat(np.arange(subjects.ids.size), per_subject)
    anchor = subjects.first_ecg[subject] + rng.integers(0, subjects.counts[subject])
    ecg_minutes = ecgs["ecg_time"].to_numpy().astype("datetime64[m]").astype(np.int64)
    days = rng.choice([-1.0, 1.0], subject.size) * rng.uniform(*_BACKGROUND_DAYS, subject.size)
    minutes = ecg_minutes[anchor] + np.rint(days * 1440.0).astype(np.int64)
    # ECGs are sorted by (subject, time): a combined key finds each lab's nearest ECG of the same subject.
    key_shift = np.int64(1) << 40
    ecg_key = ecgs["subject_index"].to_numpy() * key_shift + ecg_minutes
    lab_key = subject * key_shift + minutes
    pos = np.searchsorted(ecg_key, lab_key)
    gap = np.minimum(np.abs(lab_key - ecg_key[np.clip(pos - 1, 0, None)]),
                     np.abs(ecg_key[np.clip(pos, None, ecg_key.size - 1)] - lab_key))
    keep = gap >= _BACKGROUND_CLEARANCE_MIN
    k = rng.normal(subjects.k_mean[subject], np.hypot(pop.k_within_sd, pop.lab_noise_sd))
    return _Specimens(subject[keep], minutes[keep].astype("datetime64[m]"), np.full(int(keep.sum()), -1),
                      np.zeros(int(keep.sum()), dtype=bool), k[keep])


def _fmt(values: np.ndarray, decimals: int) -> np.ndarray:
    """Numbers -> strings with a fixed number of decimals (MIMIC prints ``4.1``, ``139.0``)."""
    return np.char.mod(f"%.{decimals}f", values)


def _analyte_rows(
    rng: np.random.Generator, analyte: _Analyte, index: np.ndarray, values: np.ndarray
) -> pd.DataFrame:
    """Rows of one analyte for specimens ``index`` (positions in the specimen table) with ``values``."""
    values = np.round(values, analyte.decimals)
    ranges = np.asarray(analyte.ref_ranges)[rng.choice(len(analyte.ref_ranges), index.size, p=analyte.ref_p)]
    return pd.DataFrame(
        {
            "_specimen": index,
            "itemid": analyte.itemid,
            "value": _fmt(values, analyte.decimals),
            "valuenum": _fmt(values, 1),
            "valueuom": analyte.uom,
            "ref_range_lower": _fmt(ranges[:, 0], 1),
            "ref_range_upper": _fmt(ranges[:, 1], 1),
            "flag": np.where((values < ranges[:, 0]) | (values > ranges[:, 1]), "abnormal", ""),
            "comments": "",
        }
    )


def _corrupt_potassium(rng: np.random.Generator, rows: pd.DataFrame, pop: Population) -> None:
    """In place: ~2 % of K+ rows lose their value ('___'); a handful of serum rows become haemolysed."""
    potassium = rows.index[rows["itemid"].isin([SERUM_POTASSIUM, WHOLE_BLOOD_POTASSIUM])].to_numpy()
    missing = potassium[rng.random(potassium.size) < pop.p_missing_value]
    rows.loc[missing, ["value", "comments"]] = MISSING_TEXT
    rows.loc[missing, ["valuenum", "flag"]] = ""
    serum = rows.index[(rows["itemid"] == SERUM_POTASSIUM) & (rows["value"] != MISSING_TEXT)].to_numpy()
    n_bad = min(serum.size, max(1, round(pop.implausible_fraction * serum.size)))
    bad = rng.choice(serum, n_bad, replace=False)
    bad_values = rng.choice(np.asarray(_HAEMOLYSED_VALUES), n_bad)
    rows.loc[bad, "value"] = rows.loc[bad, "valuenum"] = _fmt(bad_values, 1)
    rows.loc[bad, "flag"] = "abnormal"
    rows.loc[bad, "comments"] = np.where(bad_values > 10, HEMOLYSIS_COMMENTS[0], MISSING_TEXT)


def _hemolysed_specimens(
    rng: np.random.Generator, ecgs: pd.DataFrame, hadm: np.ndarray, primary: _Specimens, pop: Population
) -> _Specimens:
    """Serum draws that were haemolysed (K+ reads ``hemolysis_rise`` too high), in two cases:

    - redrawn: a near ECG (its lab >= 2 min away) also has a haemolysed draw at half its lab's distance,
      so the haemolysed one is the nearest;
    - alone: an ECG whose only valid serum lab is hours away has a haemolysed one within +/-59 min.
    ``primary`` holds each ECG's first serum lab, in ECG order.
    """
    n = len(ecgs)
    ecg_time = ecgs["ecg_time"].to_numpy().astype("datetime64[m]")
    delta = (primary.time[:n] - ecg_time).astype(np.int64)
    far = np.abs(delta) > 60
    draw = rng.random(n)
    redraw = ~far & (np.abs(delta) >= 2) & (draw < pop.p_hemolysed_redraw)
    alone = far & (draw < pop.p_hemolysed_only / pop.p_far_lab)
    shift = np.where(redraw, np.trunc(delta / 2), rng.integers(-59, 60, n))
    chosen = redraw | alone
    rise = rng.uniform(*pop.hemolysis_rise, n)
    value = ecgs["k_true"].to_numpy() + rng.normal(0.0, pop.lab_noise_sd, n) + rise
    subject = ecgs["subject_index"].to_numpy()
    return _Specimens(subject[chosen], (ecg_time + _minutes(shift))[chosen], hadm[chosen],
                      np.zeros(int(chosen.sum()), dtype=bool), value[chosen])


def _comment(rng: np.random.Generator, rows: pd.DataFrame, mask: np.ndarray, p: float,
             texts: tuple[str, ...]) -> None:
    """In place: rows in ``mask`` with no comment get one of ``texts`` with probability ``p``."""
    chosen = mask & (rows["comments"] == "").to_numpy() & (rng.random(len(rows)) < p)
    rows.loc[chosen, "comments"] = rng.choice(np.asarray(texts), int(chosen.sum()))


def _comment_potassium(rng: np.random.Generator, rows: pd.DataFrame, pop: Population) -> None:
    """In place: the comments MIMIC writes on valid K+ rows (high values verified, notices)."""
    serum = (rows["itemid"] == SERUM_POTASSIUM).to_numpy()
    value = pd.to_numeric(rows["valuenum"], errors="coerce").to_numpy()
    _comment(rng, rows, serum & (value >= _HIGH_K) & (value <= 10), pop.p_verified_high, VERIFIED_COMMENTS)
    _comment(rng, rows, serum & np.isfinite(value), pop.p_reference_notice, (_REFERENCE_NOTICE,))
    _comment(rng, rows, (rows["itemid"] == WHOLE_BLOOD_POTASSIUM).to_numpy(), pop.p_tube_notice, _TUBE_NOTICES)


def _labevents(
    rng: np.random.Generator, specimens: _Specimens, subjects: _Subjects, pop: Population,
    hemolysed: bool = False,
) -> pd.DataFrame:
    """The ``labevents`` rows of all specimens: K+ plus the panel's distractors, sorted and numbered.

    ``hemolysed``: the specimens are haemolysed draws: their K+ carries MIMIC's haemolysis comment (and no
    other corruption); their specimen ids follow the others'."""
    n = specimens.k.size
    serum = np.flatnonzero(~specimens.blood_gas)
    gas = np.flatnonzero(specimens.blood_gas)
    parts = [
        _analyte_rows(rng, _SERUM_K, serum, specimens.k[serum]),
        _analyte_rows(rng, _WHOLE_BLOOD_K, gas, specimens.k[gas]),
    ]
    for analyte in _DISTRACTORS:
        spread = rng.normal(0.0, analyte.spread, serum.size)
        values = analyte.centre * np.exp(spread) if analyte.lognormal else analyte.centre + spread
        parts.append(_analyte_rows(rng, analyte, serum, np.maximum(values, 10.0 ** -analyte.decimals)))
    rows = pd.concat(parts, ignore_index=True)
    if hemolysed:
        potassium = (rows["itemid"] == SERUM_POTASSIUM).to_numpy()
        rows.loc[potassium, "comments"] = rng.choice(np.asarray(HEMOLYSIS_COMMENTS), int(potassium.sum()))
    else:
        _corrupt_potassium(rng, rows, pop)

    providers = np.char.mod("P%05X", rng.integers(0, 16**5, _N_PROVIDERS))
    provider = np.where(rng.random(n) < _P_NO_PROVIDER, "", rng.choice(providers, n))
    store = specimens.time + _minutes(rng.integers(*_STORE_DELAY_MIN, n))
    spec = pd.DataFrame(
        {
            "subject_id": subjects.ids[specimens.subject_index],
            "hadm_id": np.where(specimens.hadm >= 0, specimens.hadm.astype(str), ""),
            "specimen_id": _unique_ids(rng, _SPECIMEN_IDS[0] + hemolysed * _SPECIMEN_IDS[1], n,
                                       span=_SPECIMEN_IDS[1]),
            "order_provider_id": provider,
            "_time": specimens.time,
            "charttime": format_time(specimens.time),
            "storetime": format_time(store),
            "priority": np.where(rng.random(n) < _P_STAT, "STAT", "ROUTINE"),
        }
    )
    rows = rows.join(spec, on="_specimen")
    order = ["subject_id", "_time", "specimen_id", "itemid"]
    rows = rows.sort_values(order, kind="stable", ignore_index=True)
    rows["labevent_id"] = np.arange(1, len(rows) + 1)
    return rows.loc[:, list(LABEVENTS_COLUMNS)]


def make_plan(n_ecgs: int, seed: int, pop: Population) -> Plan:
    """Draw subjects, ECG times, true K+ and the lab and patient tables of a dataset of ``n_ecgs`` ECGs."""
    rng = np.random.default_rng([seed, PLAN_STREAM])
    subjects = _draw_subjects(rng, n_ecgs, pop)
    ecgs, hadm = _draw_ecgs(rng, subjects, pop)
    patients = _draw_patients(rng, subjects, ecgs, pop)
    near_ecgs = _ecg_specimens(rng, ecgs, hadm, pop)
    specimens = _Specimens.concat([near_ecgs, _background_specimens(rng, subjects, ecgs, pop)])
    labs = _labevents(rng, specimens, subjects, pop)
    comments_rng = np.random.default_rng([seed, COMMENT_STREAM])
    hemolysed = _hemolysed_specimens(comments_rng, ecgs, hadm, near_ecgs, pop)
    if hemolysed.k.size:
        extra = _labevents(comments_rng, hemolysed, subjects, pop, hemolysed=True)
        labs = pd.concat([labs, extra], ignore_index=True)
        labs = labs.sort_values(["subject_id", "charttime", "specimen_id", "itemid"], kind="stable",
                                ignore_index=True)
        labs["labevent_id"] = np.arange(1, len(labs) + 1)
    _comment_potassium(comments_rng, labs, pop)
    return Plan(ecgs=ecgs, patients=patients, labevents=labs)


def record_list(ecgs: pd.DataFrame) -> pd.DataFrame:
    """The v1.0 ``record_list.csv`` rows (ECG time to the minute, ``p<4 digits>`` group directory)."""
    return pd.DataFrame(
        {
            "subject_id": ecgs["subject_id"],
            "study_id": ecgs["study_id"],
            "file_name": ecgs["study_id"],
            "ecg_time": format_time(ecgs["ecg_time"].to_numpy()),
            "path": ecgs["path"],
        }
    )
