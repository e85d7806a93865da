"""The signal-quality gate: is the preprocessed model input an ECG at all? (``low_quality`` otherwise.)

It runs on the model input (the card's leads after :func:`ecg_k.preprocessing.preprocess`: band-passed,
resampled, z-scored), so it judges exactly what the model would see, at one known rate. Steps:

1. R peaks with neurokit2 (its ``ecg_clean`` as :func:`ecg_clean` computes it, then ``ecg_findpeaks``, method
   ``neurokit``) on the model lead with the widest 1-99 % range (the next two are tried when it shows under 4
   beats in 10 s); at least ``min_beats`` beats in the record and a rate within [``min_rate_bpm``,
   ``max_rate_bpm``].
2. Beat-template correlation (the quality index): in each model lead, the median Pearson correlation of the
   beat windows (at the reference lead's R peaks) with their median beat; the median over leads. An ECG
   repeats its P-QRS-T in every lead at the same times; noise does not, and electrode-motion noise, being
   independent between electrodes, does not line up across leads. And the share of the reference median
   beat's energy outside the QRS (+-60 ms): an ECG has P and T waves; spikes and pulse trains have none.
3. Kurtosis (kSQI, median over the model leads): an ECG is peaky; a sawtooth, a sine or a random walk is not.
4. QRS-band power ratio (pSQI, median over leads): power in 5-15 Hz over 5-40 Hz; white or uniform noise, a
   chirp, spikes and pulse trains spread their power flat.

neurokit2's own ``ecg_quality`` was measured and not used as the index: its ``averageQRS`` scored white noise
0.77 against 0.40-0.84 for real 12-lead records, and ``zhao2018`` rated white noise "Excellent".
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Literal

import neurokit2 as nk
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import signal as sps
from scipy import stats

from ecg_k.quality import QualityError, SkipReason


class SignalQualityConfig(BaseModel):
    """Thresholds of the gate; saved in every model card (and dataset manifest) that applied it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["nk-peaks+template+ksqi+psqi/2"] = "nk-peaks+template+ksqi+psqi/2"
    min_beats: int = Field(default=4, ge=1, description="Fewest R peaks in the record.")
    min_rate_bpm: float = Field(default=25.0, gt=0)
    max_rate_bpm: float = Field(default=250.0, gt=0)
    min_template_corr: float = Field(default=0.5, ge=-1, le=1, description="Median beat-template correlation.")
    min_outside_qrs_share: float = Field(default=0.01, ge=0, le=1, description="Median beat's P+T energy share.")
    min_kurtosis: float = Field(default=2.7, description="Median over leads of the (Pearson) kurtosis.")
    min_qrs_power_ratio: float = Field(default=0.38, ge=0, le=1, description="Median over leads of pSQI.")


class SignalQuality(BaseModel):
    """What the gate measured on one ECG (kept with a prediction for audit)."""

    model_config = ConfigDict(frozen=True)

    beats: int
    rate_bpm: float
    template_corr: float | None
    outside_qrs_share: float | None
    kurtosis: float
    qrs_power_ratio: float


_BEAT_WINDOW_S = (0.25, 0.45)
"""Beat window around an R peak (before, after): P wave to the end of T."""
_REFERENCE_TRIES = 3
"""Leads tried for the R peaks, widest 1-99 % range first."""
_MIN_REFERENCE_BEATS_PER_10S = 4
_QRS_HALF_WIDTH_S = 0.06
"""Half-width of the QRS part of that window."""


def _beat_matrix(clean: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray | None:
    """One row per complete beat window (along the last axis: ``(..., beats, window)``), or None with fewer
    than two."""
    before, after = (int(round(s * fs)) for s in _BEAT_WINDOW_S)
    inside = peaks[(peaks >= before) & (peaks + after < clean.shape[-1])]
    if inside.size < 2:
        return None
    return clean[..., inside[:, None] + np.arange(-before, after)[None, :]]


def _template_corr(beats: np.ndarray) -> np.ndarray:
    """Per lead of ``(leads, beats, window)``: the median Pearson correlation of each beat with the lead's
    median beat."""
    template = np.median(beats, axis=1)
    centred = beats - beats.mean(axis=2, keepdims=True)
    ref = template - template.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(centred, axis=2) * np.linalg.norm(ref, axis=1)[:, None]
    products = np.einsum("lbw,lw->lb", centred, ref)
    corr = np.divide(products, denom, out=np.zeros(beats.shape[:2]), where=denom > 0)
    medians: np.ndarray = np.median(corr, axis=1)
    return medians


def _outside_qrs_share(beats: np.ndarray, fs: float) -> float:
    """Share of the median beat's energy outside the QRS (P and T waves): near 0 for spikes or pulses."""
    before = int(round(_BEAT_WINDOW_S[0] * fs))
    template = np.median(beats, axis=0)
    energy = np.square(template - np.median(template))
    qrs = np.abs(np.arange(template.size) - before) <= int(round(_QRS_HALF_WIDTH_S * fs))
    return float(energy[~qrs].sum() / max(float(energy.sum()), 1e-12))


@functools.lru_cache(maxsize=8)
def _clean_highpass(rate: int) -> np.ndarray:
    """The high-pass of neurokit2's ``ecg_clean(method="neurokit")``: Butterworth, order 5, 0.5 Hz, as SOS."""
    sos: np.ndarray = sps.butter(5, 0.5, btype="highpass", output="sos", fs=rate)
    return sos


def ecg_clean(lead: np.ndarray, rate: int) -> np.ndarray:
    """``neurokit2.ecg_clean(lead, rate, method="neurokit")`` of a finite lead, with its high-pass designed once
    per rate (the design cost a third of the call): the zero-phase high-pass, then neurokit's powerline filter
    (a zero-phase moving average over one 50 Hz period). A test holds it equal to neurokit's output."""
    highpassed = sps.sosfiltfilt(_clean_highpass(rate), lead)
    kernel = np.ones(int(rate / 50) if rate >= 100 else 2)
    cleaned: np.ndarray = sps.filtfilt(kernel, [kernel.size], highpassed, method="pad")
    return cleaned


def _reference_peaks(candidates: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """neurokit2 cleaning and R peaks on the first candidate lead that shows enough beats (4 in 10 s)."""
    rate = int(round(fs))
    for lead in candidates:
        with warnings.catch_warnings():  # neurokit warns on signals without peaks, which it must judge here
            warnings.simplefilter("ignore")
            clean = ecg_clean(lead, rate)
            found = nk.ecg_findpeaks(clean, sampling_rate=rate, method="neurokit")  # ecg_peaks' R peaks, no frame
        peaks = np.asarray(found["ECG_R_Peaks"], dtype=np.int64)
        if peaks.size >= _MIN_REFERENCE_BEATS_PER_10S * lead.size / (10 * fs):
            break
    return clean, peaks


def measure(model_input: np.ndarray, fs: float) -> SignalQuality:
    """The gate's measurements on a preprocessed ``(leads, samples)`` input sampled at ``fs``."""
    x = np.asarray(model_input, dtype=np.float64)
    kurtosis = stats.kurtosis(x, axis=1, fisher=False)
    low, high = np.percentile(x, [1, 99], axis=1)
    clean, peaks = _reference_peaks(x[np.argsort(-(high - low))[:_REFERENCE_TRIES]], fs)
    beats = _beat_matrix(clean, peaks, fs)
    lead_beats = _beat_matrix(x, peaks, fs)
    freqs, power = sps.welch(x, fs=fs, nperseg=min(x.shape[1], int(round(2 * fs))), axis=1)
    band = power[:, (freqs >= 5) & (freqs <= 15)].sum(axis=1)
    wide = power[:, (freqs >= 5) & (freqs <= 40)].sum(axis=1)
    ratio = np.divide(band, wide, out=np.zeros_like(band), where=wide > 0)
    return SignalQuality(
        beats=int(peaks.size),
        rate_bpm=float(60.0 * peaks.size / (x.shape[1] / fs)),
        template_corr=None if lead_beats is None else float(np.median(_template_corr(lead_beats))),
        outside_qrs_share=None if beats is None else _outside_qrs_share(beats, fs),
        kurtosis=float(np.median(kurtosis)),
        qrs_power_ratio=float(np.median(ratio)),
    )


def check_signal_quality(model_input: np.ndarray, fs: float, config: SignalQualityConfig) -> SignalQuality:
    """Raise ``QualityError(low_quality)`` naming the failed criterion; return the measurements otherwise."""
    q = measure(model_input, fs)
    problems: Sequence[tuple[bool, str]] = (
        (q.beats < config.min_beats, f"{q.beats} beat(s) detected; at least {config.min_beats} required"),
        (not config.min_rate_bpm <= q.rate_bpm <= config.max_rate_bpm,
         f"heart rate {q.rate_bpm:.0f} bpm outside [{config.min_rate_bpm:g}, {config.max_rate_bpm:g}]"),
        (q.template_corr is None or q.template_corr < config.min_template_corr,
         f"beats do not repeat (template correlation {q.template_corr if q.template_corr is not None else 0:.2f}"
         f" < {config.min_template_corr:g})"),
        (q.outside_qrs_share is None or q.outside_qrs_share < config.min_outside_qrs_share,
         f"beats have no P or T wave (energy share outside the QRS "
         f"{q.outside_qrs_share if q.outside_qrs_share is not None else 0:.3f} < {config.min_outside_qrs_share:g})"),
        (q.kurtosis < config.min_kurtosis,
         f"no QRS-like peaks (kurtosis {q.kurtosis:.1f} < {config.min_kurtosis:g})"),
        (q.qrs_power_ratio < config.min_qrs_power_ratio,
         f"power not in the QRS band (5-15 Hz share {q.qrs_power_ratio:.2f} < {config.min_qrs_power_ratio:g})"),
    )
    failed = [message for bad, message in problems if bad]
    if failed:
        raise QualityError(SkipReason.LOW_QUALITY, "not a usable ECG: " + "; ".join(failed))
    return q
