"""Every number of the synthetic generator, in frozen dataclasses saved verbatim in the manifest.

Units: seconds, millivolts (dipole amplitudes: the value a unit-length lead vector parallel to the wave's
dipole would see), mmol/L for K+, degrees for angles. "LN(s)" below means a multiplicative lognormal
factor ``exp(N(0, s))``. docs/synthetic.md explains each group and its clinical source.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PotassiumEffects:
    """How the true K+ at ECG time shapes the waves (all continuous, see :func:`potassium_effects`)."""

    k_ref: float = 4.2  # centre of the mild T slope
    ramp_width: float = 0.3  # softness (mmol/L) of the softplus ramps below
    t_slope: float = 0.12  # T amplitude *= exp(t_slope * (K - k_ref)): mild signal in the normal range
    hyper_t_knee: float = 5.3  # peaked T starts here
    hyper_t_gain: float = 0.6  # T amplitude *= 1 + gain * ramp
    hyper_t_narrow: float = 0.45  # T widths /= 1 + narrow * ramp (tall and narrow)
    hyper_t_symmetry: float = 1.5  # T left/right width ratio -> 1 as exp(-symmetry * ramp)
    hyper_qrs_knee_early: float = 5.8  # slight QRS widening from here ...
    hyper_qrs_gain_early: float = 0.06
    hyper_qrs_knee: float = 6.5  # ... and marked widening above this
    hyper_qrs_gain: float = 0.35  # QRS time scale *= 1 + early + gain * ramp; R amplitude /= sqrt(scale)
    hyper_p_knee: float = 6.0  # P flattening and PR prolongation start here
    hyper_p_flatten: float = 0.9  # P amplitude *= exp(-flatten * ramp)
    hyper_p_widen: float = 0.25  # P width *= 1 + widen * ramp
    hyper_pr_s: float = 0.04  # PR += hyper_pr_s * ramp
    hypo_knee: float = 3.6  # hypokalemic effects start below this
    hypo_t_flatten: float = 1.3  # T amplitude /= 1 + flatten * ramp
    hypo_t_widen: float = 0.25  # T widths *= 1 + widen * ramp
    hypo_u_mv: float = 0.26  # U amplitude += hypo_u_mv * ramp (U > T below ~3.0)
    hypo_st_mv: float = -0.10  # ST-segment term += hypo_st_mv * ramp (depression along the T dipole)
    hypo_qt_s: float = 0.04  # QT += hypo_qt_s * ramp (T and U later: long QT(U))


@dataclass(frozen=True)
class Morphology:
    """Population means and between-subject spreads of the waves."""

    qrs_axis_deg: tuple[float, float] = (45.0, 25.0)  # frontal QRS axis N(mean, sd), clipped below
    qrs_axis_clip_deg: tuple[float, float] = (-30.0, 100.0)
    qrs_posterior: tuple[float, float] = (-0.35, 0.15)  # z (anterior +) component of the R dipole N(mean, sd)
    t_axis_offset_deg: float = 15.0  # T axis = QRS axis + N(0, this)
    t_anterior: tuple[float, float] = (0.2, 0.15)  # z component of the T dipole
    p_axis_deg: tuple[float, float] = (55.0, 12.0)
    direction_jitter: float = 0.1  # N(0, this) added to every fixed dipole direction, then normalised
    q_direction: tuple[float, float, float] = (-0.55, -0.1, 0.8)  # septal: rightward and anterior
    s_direction: tuple[float, float, float] = (-0.35, -0.35, -0.85)  # late: rightward, superior, posterior
    amp_mv: tuple[float, ...] = (0.18, 0.10, 1.30, 0.45, 0.45, 0.035)  # P, Q, R, S, T, U medians
    amp_sigma: tuple[float, ...] = (0.25, 0.40, 0.25, 0.35, 0.30, 0.30)  # their LN spreads (T: 0.3)
    st_offset_sd_mv: float = 0.015  # subject ST level N(0, sd) along the T dipole
    p_sigma_s: tuple[float, float] = (0.022, 0.10)  # P Gaussian width, LN
    pr_s: tuple[float, float, float, float] = (0.155, 0.018, 0.11, 0.21)  # PR N(mean, sd) clipped
    qrs_offsets_s: tuple[float, float, float] = (-0.028, 0.0, 0.030)  # Q, R, S centres about the R peak
    qrs_sigmas_s: tuple[float, float, float] = (0.009, 0.011, 0.011)  # Q, R, S widths
    qrs_scale_sigma: float = 0.08  # subject QRS time scale LN
    qtc_s: tuple[float, float] = (0.405, 0.018)  # Fridericia QTc N(mean, sd): QT = QTc * RR^(1/3)
    t_sigma_right_s: tuple[float, float] = (0.045, 0.10)  # descending T half-width, LN
    t_asymmetry: tuple[float, float] = (1.7, 0.10)  # ascending / descending width ratio, LN
    u_sigma_s: float = 0.04
    u_delay_s: float = 0.11  # U peak after the T peak (scaled with the T width, so later when hypokalemic)
    heart_rate_bpm: tuple[float, float, float, float] = (75.0, 12.0, 45.0, 130.0)  # N(mean, sd), clipped


@dataclass(frozen=True)
class Recording:
    """What changes between two ECGs of one subject besides K+: rhythm, electrodes, noise."""

    limb_angles_deg: tuple[float, float] = (0.0, 60.0)  # lead I and II in the frontal plane (y inferior)
    chest_angles_deg: tuple[float, ...] = (120.0, 95.0, 75.0, 55.0, 30.0, 0.0)  # V1-V6, from left to anterior
    chest_gains: tuple[float, ...] = (1.0, 1.5, 1.5, 1.4, 1.2, 1.0)  # proximity of the chest electrodes
    hr_sd_bpm: float = 6.0  # ECG heart rate = subject rate + N(0, sd), clipped to the subject clip range
    rr_sd: float = 0.025  # beat-to-beat RR jitter (fraction of the mean RR)
    rsa: float = 0.03  # respiratory sinus arrhythmia amplitude (fraction)
    resp_hz: tuple[float, float] = (0.2, 0.35)  # respiration rate U(low, high)
    resp_amp_mod: float = 0.05  # QRS amplitude modulation with respiration
    beat_amp_sd: float = 0.03  # per-beat, per-wave amplitude jitter
    gain_sigma: float = 0.05  # whole-ECG amplitude LN
    limb_angle_sd_deg: float = 4.0  # electrode-placement jitter of the limb lead vectors
    limb_gain_sigma: float = 0.05
    chest_angle_sd_deg: float = 6.0  # ... and of the precordial ones (horizontal angle, elevation, gain)
    chest_elevation_sd: float = 0.1
    chest_gain_sigma: float = 0.10
    white_mv: tuple[float, float] = (0.006, 0.5)  # per-electrode white noise sd: median, LN sigma
    wander_mv: tuple[float, float] = (0.05, 0.5)  # baseline-wander amplitude per electrode
    wander_hz: tuple[float, float] = (0.05, 0.5)  # two sinusoids per electrode, U(low, high)
    mains_mv: tuple[float, float] = (0.004, 0.7)  # 60 Hz amplitude per electrode
    mains_hz: float = 60.0


@dataclass(frozen=True)
class Population:
    """Subjects, K+ distribution, timing and labs of the tables."""

    ecgs_per_subject_extra: float = 2.0  # ECGs per subject = 1 + Poisson(this): mean 3
    # subject K+ ~ mixture of (weight, mean, sd): normal, hypokalemic and hyperkalemic subjects
    k_mixture: tuple[tuple[float, float, float], ...] = (
        (0.80, 4.2, 0.40), (0.13, 3.3, 0.35), (0.07, 5.6, 0.7)
    )
    k_within_sd: float = 0.25  # ECG K+ = subject K+ + N(0, sd) ...
    k_clip: tuple[float, float] = (1.9, 7.9)  # ... clipped to this range
    lab_noise_sd: float = 0.12  # lab value = true K+ + N(0, sd), rounded to 0.1
    lab_drift_sd: float = 0.30  # extra deviation of a lab taken hours away from the ECG
    p_two_labs: float = 0.07  # two serum labs within +/-60 min, with different values
    p_far_lab: float = 0.07  # the only serum lab is 1-8 h away (no lab in the window)
    near_delta_sd_min: float = 20.0  # lab - ECG time N(0, sd) minutes, clipped to +/-59
    far_delta_min: tuple[float, float] = (61.0, 480.0)
    p_whole_blood: float = 0.12  # a blood-gas K+ (50822) within +/-90 min
    whole_blood_noise_sd: float = 0.2
    background_labs_per_subject: float = 1.5  # Poisson count of K+ panels days away from any ECG
    p_missing_value: float = 0.02  # K+ rows with value '___' and no valuenum
    implausible_fraction: float = 0.003  # serum K+ rows replaced by a haemolysed 12.5 or a 0.8 (>= 1 row)
    p_hemolysed_redraw: float = 0.02  # ECGs whose nearest serum draw was haemolysed (redrawn farther away)
    p_hemolysed_only: float = 0.01  # ECGs whose only serum lab in the window is haemolysed (far-lab ones)
    hemolysis_rise: tuple[float, float] = (0.3, 2.0)  # a haemolysed K+ reads U(low, high) above the true K+
    p_verified_high: float = 0.3  # serum K+ >= 5.5 rows whose comment confirms the value
    p_reference_notice: float = 0.03  # serum K+ rows with "New reference range as of ___."
    p_tube_notice: float = 0.05  # whole-blood K+ rows naming the tube ("GREEN TOP.")
    p_same_stay: float = 0.5  # the next ECG of a subject is hours (not months) after the last one
    same_stay_gap_h: float = 10.0  # exponential mean, at least 15 min
    new_stay_gap_days: float = 200.0
    p_outpatient_stay: float = 0.15  # stays without hadm_id
    p_dod: float = 0.08


@dataclass(frozen=True)
class SynthParams:
    """All parameters of the generative model (the manifest stores ``dataclasses.asdict`` of this)."""

    fs: float = 500.0
    n_samples: int = 5000
    gain_adu_per_mv: float = 200.0
    potassium: PotassiumEffects = field(default_factory=PotassiumEffects)
    morphology: Morphology = field(default_factory=Morphology)
    recording: Recording = field(default_factory=Recording)
    population: Population = field(default_factory=Population)
