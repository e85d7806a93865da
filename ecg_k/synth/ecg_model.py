"""The waveform model: a beat-by-beat sum of Gaussian waves, each with a 3-D dipole direction.

In the spirit of ECGSYN (McSharry et al., IEEE TBME 2003), but written directly in time rather than as an
ODE so that one 12-lead ECG costs a few milliseconds: every beat adds P, Q, R, S, an ST-segment term, an
asymmetric T (two half-Gaussians) and U to a 3-D cardiac dipole; leads are projections of that dipole on
lead vectors, plus electrode noise. Limb leads III, aVR, aVL, aVF are derived from I and II, and the
electrode noise enters through the electrodes, so Einthoven's and Goldberger's relations hold exactly
before quantisation. K+ acts through :func:`potassium_effects` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.synth.params import Morphology, PotassiumEffects, Recording, SynthParams

WAVES: tuple[str, ...] = ("P", "Q", "R", "S", "ST", "T", "U")
_QRS = [WAVES.index(w) for w in ("Q", "R", "S")]
_DIPOLES = ("P", "Q", "R", "S", "T")  # distinct dipole directions; the ST segment and U share T's
_DIPOLE_OF_WAVE = [_DIPOLES.index("T" if w in ("ST", "U") else w) for w in WAVES]
_CUTOFF_SIGMAS = 5.0  # a wave is evaluated within +/- 5 widths of its centre (exp(-12.5) ~ 4e-6)
_N_ELECTRODES = 9  # RA, LA, LL, V1-V6
_WANDER_STEP = 10  # baseline wander (< 1 Hz) is evaluated every 10 samples and interpolated


@dataclass(frozen=True)
class KEffects:
    """Multipliers and offsets that K+ applies (arrays shaped like the K+ input)."""

    t_amp: np.ndarray
    t_width: np.ndarray
    t_symmetry: np.ndarray  # 1: the subject's usual asymmetry; 0: a symmetric T
    qrs_scale: np.ndarray
    p_amp: np.ndarray
    p_width: np.ndarray
    pr_extra_s: np.ndarray
    u_mv: np.ndarray
    st_mv: np.ndarray
    qt_extra_s: np.ndarray


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Softplus: ~0 below 0, ~x above, smooth over ``width``; makes every effect continuous in K+."""
    return width * np.logaddexp(0.0, x / width)


def potassium_effects(k: float | np.ndarray, p: PotassiumEffects) -> KEffects:
    """The ECG effects of a true K+ value (mmol/L); vectorised over ``k``."""
    k = np.asarray(k, dtype=np.float64)
    w = p.ramp_width
    hyper_t = _ramp(k - p.hyper_t_knee, w)
    hyper_p = _ramp(k - p.hyper_p_knee, w)
    hypo = _ramp(p.hypo_knee - k, w)
    return KEffects(
        t_amp=np.exp(p.t_slope * (k - p.k_ref))
        * (1.0 + p.hyper_t_gain * hyper_t)
        / (1.0 + p.hypo_t_flatten * hypo),
        t_width=(1.0 + p.hypo_t_widen * hypo) / (1.0 + p.hyper_t_narrow * hyper_t),
        t_symmetry=np.exp(-p.hyper_t_symmetry * hyper_t),
        qrs_scale=1.0
        + p.hyper_qrs_gain_early * _ramp(k - p.hyper_qrs_knee_early, w)
        + p.hyper_qrs_gain * _ramp(k - p.hyper_qrs_knee, w),
        p_amp=np.exp(-p.hyper_p_flatten * hyper_p),
        p_width=1.0 + p.hyper_p_widen * hyper_p,
        pr_extra_s=p.hyper_pr_s * hyper_p,
        u_mv=p.hypo_u_mv * hypo,
        st_mv=p.hypo_st_mv * hypo,
        qt_extra_s=p.hypo_qt_s * hypo,
    )


@dataclass(frozen=True)
class Subject:
    """What stays fixed across one subject's ECGs (apart from K+ and recording conditions)."""

    directions: np.ndarray  # (len(WAVES), 3) unit dipole directions; x left, y inferior, z anterior
    amplitudes: np.ndarray  # (len(WAVES),) mV; the ST entry is the subject's ST level
    p_sigma_s: float
    pr_s: float
    qrs_scale: float
    qtc_s: float
    t_sigma_right_s: float
    t_asymmetry: float
    heart_rate_bpm: float


def _unit(v: np.ndarray) -> np.ndarray:
    """Normalise the last axis to unit length."""
    unit: np.ndarray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return unit


def _frontal(angle_deg: float, z: float) -> np.ndarray:
    """A direction at ``angle_deg`` in the frontal plane (0 left, 90 inferior) with anterior part ``z``."""
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a), z])


def _lognormal(rng: np.random.Generator, sigma: float | np.ndarray) -> np.ndarray:
    """Multiplicative spread ``exp(N(0, sigma))`` (median 1), shaped like ``sigma``."""
    return np.exp(rng.normal(0.0, sigma))


def draw_subject(rng: np.random.Generator, m: Morphology) -> Subject:
    """Draw one subject's morphology (axes, amplitudes, intervals, resting heart rate)."""
    qrs_axis = float(np.clip(rng.normal(*m.qrs_axis_deg), *m.qrs_axis_clip_deg))
    t_axis = qrs_axis + rng.normal(0.0, m.t_axis_offset_deg)
    distinct = np.stack([  # in _DIPOLES order
        _frontal(rng.normal(*m.p_axis_deg), 0.1),
        np.asarray(m.q_direction),
        _frontal(qrs_axis, rng.normal(*m.qrs_posterior)),
        np.asarray(m.s_direction),
        _frontal(t_axis, rng.normal(*m.t_anterior)),
    ])
    distinct = _unit(_unit(distinct) + rng.normal(0.0, m.direction_jitter, size=distinct.shape))
    directions = distinct[_DIPOLE_OF_WAVE]
    peaks = np.asarray(m.amp_mv) * _lognormal(rng, np.asarray(m.amp_sigma))
    amplitudes = np.insert(peaks, WAVES.index("ST"), rng.normal(0.0, m.st_offset_sd_mv))
    mean_pr, sd_pr, low_pr, high_pr = m.pr_s
    mean_hr, sd_hr, low_hr, high_hr = m.heart_rate_bpm
    return Subject(
        directions=directions,
        amplitudes=amplitudes,
        p_sigma_s=float(m.p_sigma_s[0] * _lognormal(rng, m.p_sigma_s[1])),
        pr_s=float(np.clip(rng.normal(mean_pr, sd_pr), low_pr, high_pr)),
        qrs_scale=float(_lognormal(rng, m.qrs_scale_sigma)),
        qtc_s=float(rng.normal(*m.qtc_s)),
        t_sigma_right_s=float(m.t_sigma_right_s[0] * _lognormal(rng, m.t_sigma_right_s[1])),
        t_asymmetry=float(m.t_asymmetry[0] * _lognormal(rng, m.t_asymmetry[1])),
        heart_rate_bpm=float(np.clip(rng.normal(mean_hr, sd_hr), low_hr, high_hr)),
    )


@dataclass(frozen=True)
class SimulatedEcg:
    """A 12-lead ECG in mV, ``(12, n)`` in ``MIMIC_LEAD_ORDER``, with its R-peak times and heart rate."""

    signal: np.ndarray
    r_times_s: np.ndarray  # every simulated beat, including those just outside the window
    heart_rate_bpm: float  # 60 / mean RR of the beats inside the window


def _beat_times(rng: np.random.Generator, rate_bpm: float, duration_s: float, rc: Recording) -> np.ndarray:
    """R-peak times with respiratory sinus arrhythmia and random RR jitter, covering the window."""
    rr_mean = 60.0 / rate_bpm
    n_beats = int(np.ceil((duration_s + 2.0 * rr_mean + 1.0) / (0.85 * rr_mean)))
    resp_hz, resp_phase = rng.uniform(*rc.resp_hz), rng.uniform(0.0, 2.0 * np.pi)
    nominal = np.arange(n_beats) * rr_mean
    rr = rr_mean * (1.0 + rc.rsa * np.sin(2.0 * np.pi * resp_hz * nominal + resp_phase)
                    + rng.normal(0.0, rc.rr_sd, n_beats))
    start = -rng.uniform(0.2, 1.2) * rr_mean
    times = start + np.concatenate(([0.0], np.cumsum(rr[:-1])))
    return times[times < duration_s + 0.5]


def _add_waves(
    out: np.ndarray, centers: np.ndarray, amps: np.ndarray, sigma_left: np.ndarray, sigma_right: np.ndarray,
    fs: float,
) -> None:
    """Add one wave of every beat (a Gaussian with separate left and right widths) to ``out`` in place."""
    half = int(np.ceil(_CUTOFF_SIGMAS * max(sigma_left.max(), sigma_right.max()) * fs))
    idx = np.rint(centers * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    dt = idx / fs - centers[:, None]
    sigma = np.where(dt < 0.0, sigma_left[:, None], sigma_right[:, None])
    values = amps[:, None] * np.exp(-0.5 * (dt / sigma) ** 2)
    inside = (idx >= 0) & (idx < out.size)
    out += np.bincount(idx[inside], weights=values[inside], minlength=out.size)


def _wave_trains(
    subject: Subject, k: float, r_times: np.ndarray, rng: np.random.Generator, params: SynthParams
) -> np.ndarray:
    """The scalar time course of every wave, ``(len(WAVES), n_samples)``, for beats at ``r_times``."""
    m, rc, fs = params.morphology, params.recording, params.fs
    e = potassium_effects(k, params.potassium)
    n_beats = r_times.size
    rr_prev = np.diff(r_times, prepend=r_times[0] - np.median(np.diff(r_times)))

    amps = subject.amplitudes * _lognormal(rng, rc.gain_sigma)
    amps[WAVES.index("P")] *= e.p_amp
    amps[_QRS] /= np.sqrt(e.qrs_scale)
    amps[WAVES.index("ST")] += e.st_mv
    amps[WAVES.index("T")] *= e.t_amp
    amps[WAVES.index("U")] += e.u_mv
    beat_amps = amps * (1.0 + rng.normal(0.0, rc.beat_amp_sd, (n_beats, len(WAVES))))
    resp = 1.0 + rc.resp_amp_mod * np.sin(2.0 * np.pi * rng.uniform(*rc.resp_hz) * r_times
                                          + rng.uniform(0.0, 2.0 * np.pi))
    beat_amps[:, _QRS] *= resp[:, None]

    qrs_scale = subject.qrs_scale * float(e.qrs_scale)
    q_off, r_off, s_off = (np.asarray(m.qrs_offsets_s) * qrs_scale).tolist()
    q_sig, r_sig, s_sig = (np.asarray(m.qrs_sigmas_s) * qrs_scale).tolist()
    qrs_onset = q_off - 2.0 * q_sig
    p_sig = subject.p_sigma_s * float(e.p_width)
    p_off = qrs_onset - (subject.pr_s + float(e.pr_extra_s)) + 2.5 * p_sig
    t_right = subject.t_sigma_right_s * float(e.t_width)
    t_left = t_right * (1.0 + (subject.t_asymmetry - 1.0) * float(e.t_symmetry))
    qt = subject.qtc_s * np.cbrt(rr_prev) + float(e.qt_extra_s)
    t_off = qrs_onset + qt - 2.5 * subject.t_sigma_right_s
    j_point = s_off + 2.0 * s_sig
    st_sig = np.maximum((t_off - j_point) / 4.0, 0.01)
    u_off = t_off + m.u_delay_s * float(e.t_width)

    ones = np.ones(n_beats)
    spec = {  # wave -> (centre offset from R, left width, right width), per beat
        "P": (p_off * ones, p_sig * ones, p_sig * ones),
        "Q": (q_off * ones, q_sig * ones, q_sig * ones),
        "R": (r_off * ones, r_sig * ones, r_sig * ones),
        "S": (s_off * ones, s_sig * ones, s_sig * ones),
        "ST": ((j_point + t_off) / 2.0, st_sig, st_sig),
        "T": (t_off, t_left * ones, t_right * ones),
        "U": (u_off, m.u_sigma_s * ones, m.u_sigma_s * ones),
    }
    trains = np.zeros((len(WAVES), params.n_samples))
    for i, wave in enumerate(WAVES):
        offset, left, right = spec[wave]
        _add_waves(trains[i], r_times + offset, beat_amps[:, i], left, right, fs)
    return trains


def _lead_vectors(rng: np.random.Generator, rc: Recording) -> np.ndarray:
    """Lead vectors of I, II, V1-V6 ``(8, 3)`` with this recording's electrode-placement jitter."""
    limb_angles = np.deg2rad(np.asarray(rc.limb_angles_deg) + rng.normal(0.0, rc.limb_angle_sd_deg, 2))
    limb = np.stack([np.cos(limb_angles), np.sin(limb_angles), np.zeros(2)], axis=1)
    limb *= _lognormal(rng, np.full(2, rc.limb_gain_sigma))[:, None]
    n_chest = len(rc.chest_angles_deg)
    chest_jitter = rng.normal(0.0, rc.chest_angle_sd_deg, n_chest)
    chest_angles = np.deg2rad(np.asarray(rc.chest_angles_deg) + chest_jitter)
    elevation = rng.normal(0.0, rc.chest_elevation_sd, n_chest)
    chest = _unit(np.stack([np.cos(chest_angles), elevation, np.sin(chest_angles)], axis=1))
    chest *= (np.asarray(rc.chest_gains) * _lognormal(rng, np.full(n_chest, rc.chest_gain_sigma)))[:, None]
    return np.concatenate([limb, chest])


# Independent leads I, II, V1-V6 from electrode potentials RA, LA, LL, V1-V6 (V_i against Wilson's terminal).
_ELECTRODE_TO_LEADS = np.zeros((8, _N_ELECTRODES))
_ELECTRODE_TO_LEADS[0, :2] = (-1.0, 1.0)
_ELECTRODE_TO_LEADS[1, [0, 2]] = (-1.0, 1.0)
_ELECTRODE_TO_LEADS[2:, :3] = -1.0 / 3.0
_ELECTRODE_TO_LEADS[2:, 3:] = np.eye(6)


def _electrode_noise(rng: np.random.Generator, params: SynthParams) -> np.ndarray:
    """White noise, two-sinusoid baseline wander and mains pickup per electrode, ``(9, n_samples)`` mV.

    The slow wander is evaluated every ``_WANDER_STEP`` samples and linearly interpolated, and the mains
    term is a combination of one sine and one cosine: float64 ``np.sin`` on every sample would dominate
    the cost of an ECG.
    """
    rc, n = params.recording, params.n_samples
    t = np.arange(n) / params.fs
    per_electrode = (_N_ELECTRODES, 1)
    white = rng.standard_normal((_N_ELECTRODES, n))
    white *= rc.white_mv[0] * _lognormal(rng, np.full(per_electrode, rc.white_mv[1]))

    wander_amp = rc.wander_mv[0] * _lognormal(rng, np.full((_N_ELECTRODES, 2, 1), rc.wander_mv[1]))
    wander_hz = rng.uniform(*rc.wander_hz, (_N_ELECTRODES, 2, 1))
    wander_phase = rng.uniform(0.0, 2.0 * np.pi, (_N_ELECTRODES, 2, 1))
    knot, frac = np.divmod(np.arange(n), _WANDER_STEP)
    knot_t = np.arange(knot[-1] + 2) * (_WANDER_STEP / params.fs)
    coarse = (wander_amp * np.sin(2.0 * np.pi * wander_hz * knot_t + wander_phase)).sum(axis=1)
    weight = frac / _WANDER_STEP
    wander = coarse[:, knot] * (1.0 - weight) + coarse[:, knot + 1] * weight

    mains_amp = rc.mains_mv[0] * _lognormal(rng, np.full(per_electrode, rc.mains_mv[1]))
    mains_phase = rng.uniform(0.0, 2.0 * np.pi, per_electrode)
    omega_t = 2.0 * np.pi * rc.mains_hz * t
    mains = mains_amp * (np.cos(mains_phase) * np.sin(omega_t) + np.sin(mains_phase) * np.cos(omega_t))
    noise: np.ndarray = white + wander + mains
    return noise


def _limb_and_chest_to_mimic(independent: np.ndarray) -> np.ndarray:
    """(I, II, V1-V6) -> the 12 leads in MIMIC order via Einthoven's and Goldberger's relations."""
    lead_1, lead_2, chest = independent[0], independent[1], independent[2:]
    derived = {
        "I": lead_1,
        "II": lead_2,
        "III": lead_2 - lead_1,
        "aVR": -(lead_1 + lead_2) / 2.0,
        "aVF": lead_2 - lead_1 / 2.0,
        "aVL": lead_1 - lead_2 / 2.0,
    }
    limb = np.stack([derived[name] for name in MIMIC_LEAD_ORDER[:6]])
    return np.concatenate([limb, chest])


def simulate_ecg(subject: Subject, k: float, rng: np.random.Generator, params: SynthParams) -> SimulatedEcg:
    """One 12-lead ECG of ``subject`` at true K+ ``k`` (mmol/L); all randomness comes from ``rng``."""
    rc = params.recording
    _, _, low_hr, high_hr = params.morphology.heart_rate_bpm
    rate = float(np.clip(subject.heart_rate_bpm + rng.normal(0.0, rc.hr_sd_bpm), low_hr, high_hr))
    duration = params.n_samples / params.fs
    r_times = _beat_times(rng, rate, duration, rc)
    trains = _wave_trains(subject, k, r_times, rng, params)
    dipole = subject.directions.T @ trains
    independent = _lead_vectors(rng, rc) @ dipole + _ELECTRODE_TO_LEADS @ _electrode_noise(rng, params)
    inside = r_times[(r_times >= 0.0) & (r_times < duration)]
    return SimulatedEcg(
        signal=_limb_and_chest_to_mimic(independent),
        r_times_s=r_times,
        heart_rate_bpm=float(60.0 / np.mean(np.diff(inside))),
    )


def to_digital(signal_mv: np.ndarray, gain_adu_per_mv: float) -> np.ndarray:
    """Quantise ``(leads, n)`` mV to the ``(n, leads)`` int16 samples a format-16 WFDB file stores."""
    info = np.iinfo(np.int16)
    return np.clip(np.rint(signal_mv * gain_adu_per_mv), info.min, info.max).astype(np.int16).T.copy()
