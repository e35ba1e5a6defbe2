"""Independent evaluation-data generator for ward deterioration prediction.

Provenance
----------
This module was written from scratch, from general clinical knowledge
(RCP NEWS2 2017 chart and escalation guidance, BTS oxygen guidance, the
usual physiology of sepsis, respiratory failure, haemorrhage, heart failure
and acute neurological events).  Its author did NOT open, read, grep or
import the project's training simulator (``libs/medstream/monitoring``) or
``bench/models/monitoring/confounding.py``.  It depends only on the Python
standard library and numpy.  The point is that a model trained on the other
simulator can be judged on data its own generator never produced.

Public API
----------
``generate(n, seed, charting) -> list[dict]`` with ``charting`` one of
``"ward"``, ``"fixed"``, ``"inverse"``, and ``news2(...)``, a scalar RCP 2017
NEWS2 scorer.

Design in one paragraph
-----------------------
Each patient has a latent physiology simulated in continuous time on a
5-minute grid that starts 12 h before admission (so illness can already be
under way on arrival) and runs to 96 h.  Every vital sign is
``baseline + circadian rhythm + Ornstein-Uhlenbeck wander + effects of
latent processes``.  The latent processes are not "ramps to an event": each
disease is a small dynamical system (logistic growth of an infection or
lung injury that meets a treatment with its own recognition delay, lag and
success/failure; a blood-loss reservoir filled by bleeding phases and drained
by transfusion; a fluid-overload reservoir; step-like neurological insults),
and vitals are nonlinear functions of those states (e.g. blood pressure is
held up by compensation until roughly 20 % blood loss and then falls
steeply; SpO2 depends on a lung "oxygenation deficit" and on the oxygen
the ward team is giving).  Oxygen is a closed loop: a simulated nurse
titrates oxygen up and down (BTS targets 94-98 %, or 88-92 % for flagged
hypercapnic patients) with random noticing delays.  Because this controller
must not depend on how often the patient is charted (the same seed must give
the same physiology for every charting mode) it acts on the true saturation
with its own delays; it is drawn from the physiology stream.

Label
-----
``event_hour`` is the first time (>= 0) at which any of these happens:
the TRUE physiology (noise-free, all parameters present, values rounded as a
chart would round them) scores NEWS2 >= 7 (scale 2 for flagged patients);
an unplanned ICU / theatre transfer (massive bleed, failed maximal oxygen,
major neurological event, refractory hypotension, coma); or death.  It is
``None`` if none of these happens before discharge.  "True" physiology is
the slow state above (minute-to-minute scatter is treated as measurement
noise).  Patients with a ward ceiling of care are not transferred; for them
only NEWS2 >= 7 or death count, and their stay continues after the event.
Stable patients with chronic abnormal baselines (home-oxygen COPD, fast AF)
sit at NEWS2 2-5 and only rarely touch 7 (with pain or post-op fever on
top); that is left in deliberately, because the label is mechanical.
Other stays end at discharge (planned length of stay 24-96 h, postponed while
on new oxygen or until 12 h clear of active illness) or 0.1-3 h after the
event (outreach review, then transfer).

Cohorts (share) and their latent dynamics
-----------------------------------------
* stable (70 %): no disease process; chronic baselines (COPD: flagged
  home-oxygen / flagged on air / unflagged mild; AF 98-116/min;
  chronic hypotension; beta-blocked bradycardia; dementia) and benign
  transients (post-op fever that settles, atelectasis needing brief oxygen,
  pain and anxiety episodes, treated minor infection).
* sepsis (9 %): logistic infection burden with treatment; febrile or
  hypothermic; tachycardia and tachypnoea first, hypotension and confusion
  late; ~60 % of treated patients respond before any event.
* respiratory (8 %): pneumonia / non-infective gradual lung injury
  (logistic) or abrupt (PE, plugging, pneumothorax); oxygen titrated up,
  failure of maximal oxygen -> ICU; CO2 narcosis in flagged patients.
* haemorrhage (5 %): slow ooze, massive bleed, or herald bleed then a
  big one; compensated tachycardia, then a late steep fall in BP;
  endoscopy/surgery may stop it, transfusion refills; >~25-30 % loss ->
  theatre/ICU.
* heart_failure (5 %): gradual congestion (hypertensive, normotensive or
  cardiogenic with falling BP) or flash pulmonary oedema, with diuretic
  response or failure.
* neuro (3 %): major stroke/bleed/status (sudden fall in AVPU with little
  beforehand, sometimes a prodrome of BP creep and fleeting confusion ->
  ICU), minor transient episodes (hypoglycaemia, post-ictal, TIA), or opioid
  narcosis (slow fall in RR and consciousness, reversed when noticed).
Early (presenting unwell, onset up to 10 h before admission) and late
(hospital-acquired) onsets are both drawn; if a draw would already be at
NEWS2 >= 7 within the first hour the illness is redrawn (such patients go
to ICU from the emergency department, not to the ward).

Charting (separate random stream)
---------------------------------
* ``ward``: RCP escalation schedule driven by the OBSERVED (noisy,
  carried-forward) NEWS2: 12-hourly (or local 6/8-hourly minimum) at 0,
  4-6-hourly at 1-4, hourly at 5-6 or any single red parameter, every 15-30
  min at >= 7, with monitor spot rows; rounds snapped to ward round times,
  lateness, missed rounds, "let them sleep" night gaps, post-op protocol
  observations, rechecks (temperature after fever, BP when low, SpO2 when
  low), neuro observations, random spot checks and incomplete full sets.
* ``fixed``: a per-patient schedule (1, 2, 4, 6, 8, 12-hourly or irregular)
  chosen independently of acuity, with partial rows at a per-patient rate.
* ``inverse``: the sicker the patient truly is, the longer the gap to the
  next observation, the more likely a round is missed and the more likely a
  row is partial.

Measurement model: Gaussian noise, integer rounding (temperature 0.1 C),
respiratory-rate digit preference (counts "eyeballed" as 16/18/20), missed
hypoactive delirium, chronic dementia charted as new confusion, SpO2
probe-off / poor-perfusion readings, HR motion artefacts, rare cuff and
thermometer errors, rare oxygen-flag errors.

Determinism
-----------
Patient ``i`` of ``seed`` draws its whole physiology from
``default_rng([seed, i, PHYS_TAG])`` and its charting from
``default_rng([seed, i, CHART_TAG, mode])``.  Physiology, ``event_hour``,
``end_hour`` and ``cohort`` are therefore identical for every charting mode,
and patient ``i`` does not depend on ``n``.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

__all__ = ["CHARTING_MODES", "COHORTS", "generate", "news2"]

# ---------------------------------------------------------------------------
# Time grid
# ---------------------------------------------------------------------------
DT = 1.0 / 12.0  # 5 minutes, in hours
T_WARM = 12.0  # latent physiology starts this many hours before admission
T_MAX = 96.0  # longest stay
N_GRID = round((T_MAX + T_WARM) / DT) + 1
I0 = round(T_WARM / DT)  # grid index of admission (t = 0)
TG = (np.arange(N_GRID) - I0) * DT  # grid times, hours since admission
LAST_EVENT_T = 95.9  # events are searched for in [0, LAST_EVENT_T]
TWO_PI_24 = 2.0 * math.pi / 24.0

PHYS_TAG = 0x5EED1
CHART_TAG = 0xC4A27

COHORTS = ("stable", "sepsis", "respiratory", "haemorrhage", "heart_failure", "neuro")
COHORT_P = (0.70, 0.09, 0.08, 0.05, 0.05, 0.03)
CHARTING_MODES = ("ward", "fixed", "inverse")
AVPU = ("A", "C", "V", "P", "U")

# Fraction of the remaining gap to ~99.6 % closed by each oxygen step
# (0 air, 1 nasal 1-2 L, 2 nasal 3-4 L, 3 simple/venturi mask, 4 reservoir mask).
O2_EFF = (0.0, 0.35, 0.55, 0.70, 0.80)

CORE = (
    "respiratory_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "temperature",
)
KIND_PARAMS = {
    "full": CORE,
    "postop": ("respiratory_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate"),
    "spot_ox": ("heart_rate", "spo2", "on_oxygen"),
    "monitor": ("heart_rate", "spo2", "on_oxygen"),
    "bp": ("systolic_bp", "heart_rate"),
    "temp": ("temperature",),
    "hr": ("heart_rate",),
    "neuro": ("consciousness", "heart_rate", "systolic_bp"),
    "resp": ("respiratory_rate", "spo2", "on_oxygen"),
}


# ---------------------------------------------------------------------------
# NEWS2 (RCP 2017)
# ---------------------------------------------------------------------------
def _r0(x: float) -> int:
    """Round half up to an integer, as a chart would."""
    return math.floor(x + 0.5)


def _s_rr(v: int) -> int:
    return 3 if v <= 8 else 1 if v <= 11 else 0 if v <= 20 else 2 if v <= 24 else 3


def _s_spo2_1(v: int) -> int:
    return 3 if v <= 91 else 2 if v <= 93 else 1 if v <= 95 else 0


def _s_spo2_2(v: int, on_o2: bool) -> int:
    if v >= 93 and on_o2:
        return 3 if v >= 97 else 2 if v >= 95 else 1
    return 3 if v <= 83 else 2 if v <= 85 else 1 if v <= 87 else 0


def _s_sbp(v: int) -> int:
    return 3 if v <= 90 else 2 if v <= 100 else 1 if v <= 110 else 0 if v <= 219 else 3


def _s_hr(v: int) -> int:
    return (
        3
        if v <= 40
        else 1
        if v <= 50
        else 0
        if v <= 90
        else 1
        if v <= 110
        else 2
        if v <= 130
        else 3
    )


def _s_temp10(v10: int) -> int:  # temperature in tenths of a degree
    return 3 if v10 <= 350 else 1 if v10 <= 360 else 0 if v10 <= 380 else 1 if v10 <= 390 else 2


def news2_components(
    respiratory_rate: float | None = None,
    spo2: float | None = None,
    on_oxygen: bool | None = None,
    systolic_bp: float | None = None,
    heart_rate: float | None = None,
    consciousness: str | None = None,
    temperature: float | None = None,
    scale_2: bool = False,
) -> list[int]:
    """Per-parameter NEWS2 sub-scores (RCP 2017); a missing parameter scores 0.

    Order: RR, SpO2, air/oxygen, SBP, HR, consciousness, temperature.
    Values are rounded as charted (integers; temperature to 0.1 C).
    SpO2 scale 2 applies when ``scale_2`` is true (hypercapnic target 88-92 %).
    """
    o2 = bool(on_oxygen)
    out = [0] * 7
    if respiratory_rate is not None:
        out[0] = _s_rr(_r0(respiratory_rate))
    if spo2 is not None:
        v = _r0(spo2)
        out[1] = _s_spo2_2(v, o2) if scale_2 else _s_spo2_1(v)
    if on_oxygen is not None:
        out[2] = 2 if o2 else 0
    if systolic_bp is not None:
        out[3] = _s_sbp(_r0(systolic_bp))
    if heart_rate is not None:
        out[4] = _s_hr(_r0(heart_rate))
    if consciousness is not None:
        out[5] = 0 if consciousness == "A" else 3
    if temperature is not None:
        out[6] = _s_temp10(_r0(temperature * 10.0))
    return out


def news2(
    respiratory_rate: float | None = None,
    spo2: float | None = None,
    on_oxygen: bool | None = None,
    systolic_bp: float | None = None,
    heart_rate: float | None = None,
    consciousness: str | None = None,
    temperature: float | None = None,
    scale_2: bool = False,
) -> int:
    """Aggregate NEWS2 score (RCP 2017 chart). Missing parameters score 0.

    Bands: RR <=8:3, 9-11:1, 12-20:0, 21-24:2, >=25:3.  SpO2 scale 1
    <=91:3, 92-93:2, 94-95:1, >=96:0.  Scale 2 <=83:3, 84-85:2, 86-87:1,
    88-92 (or >=93 on air):0, on oxygen 93-94:1, 95-96:2, >=97:3.  Oxygen:2.
    SBP <=90:3, 91-100:2, 101-110:1, 111-219:0, >=220:3.  Pulse <=40:3,
    41-50:1, 51-90:0, 91-110:1, 111-130:2, >=131:3.  New confusion/V/P/U:3.
    Temperature <=35.0:3, 35.1-36.0:1, 36.1-38.0:0, 38.1-39.0:1, >=39.1:2.
    """
    return sum(
        news2_components(
            respiratory_rate,
            spo2,
            on_oxygen,
            systolic_bp,
            heart_rate,
            consciousness,
            temperature,
            scale_2,
        )
    )


def _news2_vec(rr, spo2, on_o2, sbp, hr, cons_level, temp, scale_2: bool) -> np.ndarray:
    """Vectorised NEWS2 over the latent grid (same rounding/bands as ``news2``)."""
    r = np.floor(rr + 0.5)
    s = np.floor(spo2 + 0.5)
    b = np.floor(sbp + 0.5)
    h = np.floor(hr + 0.5)
    t10 = np.floor(temp * 10.0 + 0.5)
    sc = np.select([r <= 8, r <= 11, r <= 20, r <= 24], [3, 1, 0, 2], 3)
    if scale_2:
        hyper = on_o2 & (s >= 93)
        sc = sc + np.where(
            hyper,
            np.select([s >= 97, s >= 95], [3, 2], 1),
            np.select([s <= 83, s <= 85, s <= 87], [3, 2, 1], 0),
        )
    else:
        sc = sc + np.select([s <= 91, s <= 93, s <= 95], [3, 2, 1], 0)
    sc = sc + np.where(on_o2, 2, 0)
    sc = sc + np.select([b <= 90, b <= 100, b <= 110, b <= 219], [3, 2, 1, 0], 3)
    sc = sc + np.select([h <= 40, h <= 50, h <= 90, h <= 110, h <= 130], [3, 1, 0, 1, 2], 3)
    sc = sc + np.where(cons_level > 0, 3, 0)
    sc = sc + np.select([t10 <= 350, t10 <= 360, t10 <= 380, t10 <= 390], [3, 1, 0, 1], 2)
    return sc.astype(np.int64)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
def _ss(x):
    """Smoothstep on [0, 1] (vectorised)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _gamma_bump(t0: float, tp: float) -> np.ndarray:
    """Rise-and-decay shape x*exp(1-x), x=(t-t0)/tp, peak 1 at t0+tp."""
    x = np.clip((TG - t0) / tp, 0.0, None)
    return x * np.exp(1.0 - x)


def _raised_cos(start: float, dur: float) -> np.ndarray:
    out = np.zeros(N_GRID)
    m = (start <= TG) & (start + dur > TG)
    out[m] = 0.5 * (1.0 - np.cos(2.0 * math.pi * (TG[m] - start) / dur))
    return out


def _after(t0: float) -> np.ndarray:
    return np.clip(TG - t0, 0.0, None)


def _ou(rp: np.random.Generator, tau: float, sigma: float) -> np.ndarray:
    """Exact AR(1) discretisation of a zero-mean OU process, stationary start."""
    a = math.exp(-DT / tau)
    b = sigma * math.sqrt(1.0 - a * a)
    e = rp.standard_normal(N_GRID).tolist()
    x = sigma * e[0]
    out = [0.0] * N_GRID
    for k in range(N_GRID):
        x = a * x + b * e[k]
        out[k] = x
    return np.asarray(out)


def _first_sustained(mask: np.ndarray, hours: float, k_from: int = I0) -> float | None:
    """First grid time >= TG[k_from] at which ``mask`` has held for ``hours``."""
    idx = np.arange(N_GRID)
    last_false = np.maximum.accumulate(np.where(mask, -1, idx))
    run = (idx - last_false) * DT
    hit = np.nonzero((run >= hours - 1e-9) & (idx >= k_from))[0]
    return float(TG[hit[0]]) if hit.size else None


def _course(
    rp: np.random.Generator,
    t0: float,
    r: float,
    s0: float,
    K: float,
    rec_thr: float,
    rec_delay: float,
    respond: bool,
    lag: float,
    kill: float,
    partial: float,
    sigma: float,
) -> np.ndarray:
    """Stochastic logistic disease course meeting a treatment.

    ds = [r s (1 - s/K) - k(t) s] dt + sigma s dW,   s(t0) = s0.
    The team recognises the illness when s first exceeds ``rec_thr`` and
    treats ``rec_delay`` hours later.  A responder's kill rate ``kill``
    (> r) ramps in over 2 h after a further ``lag``; a non-responder only
    slows growth (``partial * r``).  Multiplicative noise keeps s >= 0 and
    a resolved illness stays resolved.
    """
    s = np.zeros(N_GRID)
    k0 = max(0, math.ceil((t0 - TG[0]) / DT))
    if k0 >= N_GRID:
        return s
    eps = rp.standard_normal(N_GRID - k0).tolist()
    sq = math.sqrt(DT)
    x = s0
    t_treat = None
    out = s.tolist()
    for j, k in enumerate(range(k0, N_GRID)):
        t = TG[0] + k * DT
        if t_treat is None and x >= rec_thr:
            t_treat = t + rec_delay
        kk = 0.0
        if t_treat is not None:
            if respond:
                u = min(max((t - t_treat - lag) / 2.0, 0.0), 1.0)
                kk = kill * u * u * (3.0 - 2.0 * u)
            else:
                u = min(max((t - t_treat) / 2.0, 0.0), 1.0)
                kk = partial * r * u * u * (3.0 - 2.0 * u)
        x = x + (r * x * (1.0 - x / K) - kk * x) * DT + sigma * x * sq * eps[j]
        if x < 0.004 and kk > 0.0:
            x = 0.0
        x = max(x, 0.0)
        out[k] = x
    return np.asarray(out)


def _onset(
    rp: np.random.Generator,
    p: _Patient,
    attempt: int,
    early_p: float,
    early_lo: float = -10.0,
    early_hi: float = 2.0,
) -> float:
    """Onset time: 'presented unwell' (before/at admission) or hospital-acquired."""
    if attempt < 4 and rp.random() < early_p:
        return float(rp.uniform(early_lo, early_hi))
    hi = max(6.0, p.los - 4.0)
    return float(rp.uniform(3.0, hi))


# ---------------------------------------------------------------------------
# Patients
# ---------------------------------------------------------------------------
class _Patient:
    """Static characteristics of one patient (all from the physiology stream)."""


SURG_P = {
    "stable": 0.45,
    "sepsis": 0.2,
    "respiratory": 0.15,
    "haemorrhage": 0.55,
    "heart_failure": 0.05,
    "neuro": 0.25,
}


def _sample_patient(rp: np.random.Generator, cohort: str) -> _Patient:
    p = _Patient()
    p.cohort = cohort
    p.age = float(np.clip(rp.normal(62.0 if cohort == "stable" else 71.0, 17.0), 18.0, 99.0))
    p.surgical = bool(rp.random() < SURG_P[cohort])
    clock = rp.normal(14.5, 2.5) if p.surgical else rp.normal(17.0, 5.0)
    p.admit_clock = float(clock % 24.0)

    # Chronic conditions (any cohort; enriched where clinically plausible).
    m = {"respiratory": 2.5, "heart_failure": 1.5}.get(cohort, 1.0)
    u = rp.random()
    if u < 0.035 * m:
        p.copd = "home_o2"  # flagged hypercapnic, long-term oxygen, scale 2
    elif u < 0.06 * m:
        p.copd = "flag_air"  # flagged hypercapnic, on air at 88-92 %, scale 2
    elif u < 0.11 * m:
        p.copd = "mild"  # not flagged: scored on scale 1
    else:
        p.copd = "none"
    p.scale2 = p.copd in ("home_o2", "flag_air")
    p.af = bool(rp.random() < (0.35 if cohort == "heart_failure" else 0.04 + 0.06 * (p.age > 70)))
    p.bb = bool((not p.af) and rp.random() < 0.08)  # beta-blocked bradycardia
    p.hypotension = bool(rp.random() < 0.04)
    p.dementia = bool(rp.random() < (0.15 if p.age > 78 else 0.02))
    p.ceiling = bool(rp.random() < (0.45 if p.age >= 85 else 0.18 if p.age >= 75 else 0.03))
    p.los = float(np.clip(rp.lognormal(math.log(44.0), 0.45), 24.0, 96.0))

    # Baselines.
    if p.af:
        p.hr0 = rp.uniform(98.0, 116.0)
    elif p.bb:
        p.hr0 = rp.uniform(47.0, 56.0)
    else:
        p.hr0 = float(np.clip(rp.normal(77.0, 9.0), 56.0, 97.0))
    p.rr0 = float(np.clip(rp.normal(15.5, 1.4), 12.0, 19.0))
    if p.copd != "none":
        p.rr0 = min(p.rr0 + rp.uniform(0.5, 3.0), 20.0)
    if p.hypotension:
        p.sbp0 = rp.uniform(94.0, 106.0)
    else:
        p.sbp0 = float(np.clip(rp.normal(124.0 + 0.3 * (p.age - 60.0), 15.0), 103.0, 185.0))
    p.spo2_0 = {
        "home_o2": rp.uniform(81.5, 86.5),  # on room air; ~88-91 % on home O2
        "flag_air": rp.uniform(88.5, 92.0),
        "mild": rp.uniform(94.8, 96.8),
    }.get(p.copd)
    if p.spo2_0 is None:
        p.spo2_0 = float(np.clip(rp.normal(97.4 - 0.03 * (p.age - 60.0), 0.9), 95.0, 99.5))
    p.temp0 = float(np.clip(rp.normal(36.75, 0.22), 36.2, 37.3))
    p.L_base = 1 if p.copd == "home_o2" else 0
    p.tlow, p.thigh = (88.0, 92.0) if p.scale2 else (94.0, 98.0)

    # Circadian amplitudes (HR/BP/RR peak mid-afternoon, temperature early evening).
    p.a_hr = rp.uniform(2.0, 6.0)
    p.a_sbp = rp.uniform(3.0, 9.0)
    p.a_rr = rp.uniform(0.2, 0.8)
    p.a_temp = rp.uniform(0.15, 0.4)
    p.a_spo2 = rp.uniform(0.5, 1.2) if p.copd != "none" else rp.uniform(0.1, 0.6)
    # OU (tau hours, stationary SD): slow physiological wander.
    p.ou = {
        "hr": (0.8, 4.5) if p.af else (1.5, 3.0),
        "rr": (2.5, 0.9),
        "sbp": (2.0, 5.5),
        "spo2": (2.0, 0.7 if p.copd != "none" else 0.5),
        "temp": (4.0, 0.12),
        "c": (0.5, 0.35),
    }
    return p


# ---------------------------------------------------------------------------
# Latent processes
# ---------------------------------------------------------------------------
class _Fx:
    """Additive effects of latent processes on the grid."""

    def __init__(self) -> None:
        z = lambda: np.zeros(N_GRID)  # noqa: E731
        self.hr, self.rr, self.sbp, self.temp = z(), z(), z(), z()
        self.spo2, self.D, self.c, self.burden = z(), z(), z(), z()
        self.icu: list[float] = []  # candidate unplanned-transfer times
        self.kind = ""


def _benign(rp: np.random.Generator, p: _Patient, fx: _Fx) -> None:
    """Benign transient abnormalities that do not deteriorate."""
    if p.surgical and rp.random() < 0.35:  # post-operative inflammatory fever
        fx.temp += rp.uniform(0.7, 1.6) * _gamma_bump(-2.0, rp.uniform(6.0, 20.0))
    if p.surgical and rp.random() < 0.22:  # basal atelectasis, settles
        bump = rp.uniform(0.05, 0.24) * _gamma_bump(-1.0, rp.uniform(10.0, 30.0))
        fx.D += bump
        fx.rr += 4.0 * bump
    pain_rate = (1.0 / 8.0) if p.surgical else (1.0 / 24.0)
    if rp.random() < (0.6 if p.surgical else 0.15):  # pain episodes
        horizon = 48.0 if p.surgical else T_MAX
        t = rp.exponential(1.0 / pain_rate)
        while t < horizon:
            sh = _raised_cos(t, rp.uniform(0.5, 3.0))
            fx.hr += rp.uniform(8.0, 24.0) * sh
            fx.rr += rp.uniform(1.0, 4.0) * sh
            fx.sbp += rp.uniform(6.0, 20.0) * sh
            t += rp.exponential(1.0 / pain_rate)
    if rp.random() < 0.07:  # anxiety / panic episodes
        t = rp.exponential(14.0)
        while t < T_MAX:
            sh = _raised_cos(t, rp.uniform(0.25, 1.5))
            fx.hr += rp.uniform(10.0, 24.0) * sh
            fx.rr += rp.uniform(4.0, 9.0) * sh
            fx.sbp += rp.uniform(4.0, 14.0) * sh
            t += rp.exponential(14.0)
    if p.cohort == "stable" and rp.random() < 0.07:  # minor infection, treated
        r = rp.uniform(0.1, 0.3)
        s = _course(
            rp,
            rp.uniform(-6.0, max(0.0, p.los - 12.0)),
            r,
            0.05,
            rp.uniform(0.15, 0.35),
            0.1,
            rp.gamma(2.0, 2.0),
            True,
            rp.uniform(1.0, 6.0),
            r + rp.uniform(0.1, 0.3),
            0.0,
            0.12,
        )
        fx.temp += rp.uniform(1.0, 2.0) * (1.0 - np.exp(-4.0 * s))
        fx.hr += 25.0 * s
        fx.rr += 5.0 * s


def _fx_sepsis(rp, p, fx, attempt):
    t0 = _onset(rp, p, attempt, 0.45)
    r = float(np.clip(rp.lognormal(math.log(0.14), 0.6), 0.03, 0.8))
    s = _course(
        rp,
        t0,
        r,
        0.05,
        rp.uniform(0.55, 1.5),
        rec_thr=rp.uniform(0.15, 0.4),
        rec_delay=rp.gamma(2.0, 1.5),
        respond=bool(rp.random() < 0.66),
        lag=rp.uniform(0.5, 4.0),
        kill=r + rp.uniform(0.08, 0.4),
        partial=rp.uniform(0.0, 0.7),
        sigma=0.15,
    )
    febrile = rp.random() < (0.7 if p.age > 75 else 0.88)
    if febrile:
        fx.temp += rp.uniform(1.2, 2.6) * (1.0 - np.exp(-4.0 * s))
    else:  # hypothermic sepsis, more often in the elderly
        fx.temp -= rp.uniform(0.8, 2.0) * _ss(s / 0.9)
    fx.hr += rp.uniform(25.0, 45.0) * np.minimum(s, 1.3)
    fx.rr += rp.uniform(7.0, 13.0) * s
    fx.sbp -= rp.uniform(35.0, 60.0) * _ss((s - 0.35) / 0.75)
    fx.spo2 -= 2.0 * s
    fx.D += 0.1 * s
    frail = 1.25 if (p.age > 75 or p.dementia) else 1.0
    fx.c += frail * rp.uniform(2.2, 3.4) * _ss((s - 0.5) / 0.7)
    fx.burden = np.maximum(fx.burden, s)
    fx.kind = "sepsis-" + ("febrile" if febrile else "hypothermic")


def _fx_resp(rp, p, fx, attempt):
    kind = str(rp.choice(["pneumonia", "noninfective", "abrupt"], p=[0.55, 0.2, 0.25]))
    t0 = _onset(rp, p, attempt, 0.4)
    if kind == "abrupt":  # PE, mucus plugging, pneumothorax, aspiration
        A = rp.uniform(0.15, 1.1)
        tau = rp.uniform(0.05, 0.6)
        D = A * (1.0 - np.exp(-_after(t0) / tau))
        if rp.random() < 0.55:
            tr = t0 + rp.uniform(2.0, 12.0)
            D = D * np.exp(-rp.uniform(0.05, 0.25) * _after(tr))
        step = _ss(_after(t0) / 0.5)
        fx.hr += rp.uniform(8.0, 25.0) * step
        fx.sbp -= rp.uniform(0.0, 30.0) * D * (rp.random() < 0.4)
    else:
        r = float(np.clip(rp.lognormal(math.log(0.07), 0.6), 0.02, 0.4))
        D = _course(
            rp,
            t0,
            r,
            0.06,
            rp.uniform(0.2, 1.25),
            rec_thr=rp.uniform(0.2, 0.4),
            rec_delay=rp.gamma(2.0, 1.5),
            respond=bool(rp.random() < 0.72),
            lag=rp.uniform(1.0, 6.0),
            kill=r + rp.uniform(0.03, 0.15),
            partial=rp.uniform(0.0, 0.6),
            sigma=0.12,
        )
        if kind == "pneumonia":
            fx.temp += rp.uniform(0.8, 2.0) * (1.0 - np.exp(-3.0 * D))
            fx.hr += rp.uniform(5.0, 15.0) * D
    fx.D += D
    fx.rr += rp.uniform(9.0, 16.0) * D**1.25
    fx.hr += rp.uniform(12.0, 25.0) * D
    fx.c += 1.8 * _ss((D - 0.9) / 0.4)
    if p.scale2:  # CO2 narcosis in a hypercapnic patient
        fx.c += rp.uniform(1.5, 3.0) * _ss((D - 0.45) / 0.6)
    fx.burden = np.maximum(fx.burden, D)
    fx.kind = "resp-" + kind


def _fx_bleed(rp, p, fx, attempt):
    kind = str(rp.choice(["slow", "massive", "herald"], p=[0.45, 0.25, 0.3]))
    t0 = _onset(rp, p, attempt, 0.3, -3.0, 3.0)
    phases = []  # (start, end, rate per hour as fraction of blood volume, growth)
    if kind == "slow":
        phases.append(
            (t0, t0 + rp.uniform(8.0, 48.0), rp.uniform(0.008, 0.04), rp.uniform(0.0, 0.06))
        )
    elif kind == "massive":
        phases.append((t0, t0 + rp.uniform(0.4, 2.5), rp.uniform(0.1, 0.35), 0.0))
    else:  # herald bleed, then maybe a big one
        phases.append((t0, t0 + rp.uniform(0.5, 1.5), rp.uniform(0.03, 0.08), 0.0))
        if rp.random() < 0.65:
            t1 = t0 + rp.uniform(3.0, 30.0)
            phases.append((t1, t1 + rp.uniform(0.4, 2.0), rp.uniform(0.08, 0.3), 0.0))
    rec_thr = rp.uniform(0.07, 0.15)
    int_delay = rp.gamma(2.0, 1.2)
    int_ok = rp.random() < 0.7
    tx_delay = rp.uniform(0.3, 2.0)
    tx_rate = rp.uniform(0.02, 0.05)
    icu_thr = rp.uniform(0.22, 0.32)
    icu_delay = rp.uniform(0.2, 1.5)
    B = 0.0
    t_rec = None
    out = [0.0] * N_GRID
    t_icu = None
    for k in range(N_GRID):
        t = TG[0] + k * DT
        stopped = t_rec is not None and int_ok and t >= t_rec + int_delay
        q = 0.0
        if not stopped:
            for a, b, rate, g in phases:
                if a <= t < b:
                    q += rate * math.exp(g * (t - a))
        if t_rec is None and rec_thr <= B:
            t_rec = t
        tx = tx_rate if (t_rec is not None and t >= t_rec + tx_delay and B > 0.0) else 0.0
        B = min(max(B + (q - tx) * DT, 0.0), 0.65)
        if t_icu is None and icu_thr <= B:
            t_icu = t + icu_delay
        out[k] = B
    B = np.asarray(out)
    if t_icu is not None:
        fx.icu.append(t_icu)
    knee = 0.14 if p.age > 75 else 0.18  # decompensation point
    fx.hr += rp.uniform(70.0, 110.0) * B
    fx.sbp -= 30.0 * B + rp.uniform(250.0, 380.0) * np.clip(B - knee, 0.0, None) ** 1.3
    fx.rr += rp.uniform(20.0, 35.0) * B
    fx.temp -= 1.0 * B
    fx.spo2 -= 1.5 * B
    fx.c += 3.0 * _ss((B - 0.28) / 0.17)
    fx.burden = np.maximum(fx.burden, B / 0.25)
    fx.kind = "bleed-" + kind


def _fx_hf(rp, p, fx, attempt):
    kind = str(rp.choice(["gradual", "flash"], p=[0.7, 0.3]))
    t0 = _onset(rp, p, attempt, 0.4)
    if kind == "gradual":  # positive balance / progressive congestion
        r = float(np.clip(rp.lognormal(math.log(0.045), 0.5), 0.015, 0.2))
        F = _course(
            rp,
            t0,
            r,
            0.1,
            rp.uniform(0.3, 1.3),
            rec_thr=rp.uniform(0.25, 0.45),
            rec_delay=rp.gamma(2.0, 1.5),
            respond=bool(rp.random() < 0.7),
            lag=rp.uniform(2.0, 8.0),
            kill=r + rp.uniform(0.02, 0.08),
            partial=rp.uniform(0.0, 0.6),
            sigma=0.08,
        )
        hypertensive = rp.random() < 0.2
        cardiogenic = (not hypertensive) and rp.random() < 0.45
    else:  # flash pulmonary oedema
        A = rp.uniform(0.35, 1.25)
        F = A * (1.0 - np.exp(-_after(t0) / rp.uniform(0.2, 1.2)))
        if rp.random() < 0.7:
            F = F * np.exp(-rp.uniform(0.1, 0.4) * _after(t0 + rp.uniform(0.5, 3.0)))
        hypertensive = rp.random() < 0.75
        cardiogenic = False
    fx.D += 0.9 * F
    fx.rr += rp.uniform(8.0, 14.0) * F
    fx.hr += rp.uniform(10.0, 25.0) * F * (1.5 if p.af else 1.0)
    if hypertensive:
        fx.sbp += rp.uniform(20.0, 50.0) * F
    elif cardiogenic:
        fx.sbp -= rp.uniform(25.0, 45.0) * _ss((F - 0.4) / 0.6)
    fx.c += 1.5 * _ss((F - 1.0) / 0.3)
    fx.burden = np.maximum(fx.burden, F)
    fx.kind = "hf-" + kind + ("-cardiogenic" if cardiogenic else "")


def _fx_neuro(rp, p, fx, attempt):
    kind = str(rp.choice(["major", "minor", "opioid"], p=[0.55, 0.3, 0.15]))
    if kind == "major":  # stroke, intracranial bleed, status epilepticus
        tn = float(rp.uniform(1.5, max(3.0, p.los - 2.0)))
        sev = rp.uniform(1.6, 4.3)
        c = sev * (1.0 - np.exp(-_after(tn) / rp.uniform(0.03, 0.4)))
        c = c + rp.uniform(0.0, 1.0) * _ss(_after(tn) / rp.uniform(2.0, 12.0))
        if rp.random() < 0.35:  # subtle prodrome: BP creep, fleeting confusion
            pd = rp.uniform(2.0, 8.0)
            fx.sbp += rp.uniform(8.0, 25.0) * _ss((TG - (tn - pd)) / pd)
            for _ in range(int(rp.integers(1, 3))):
                fx.c += 0.9 * _raised_cos(tn - rp.uniform(0.5, pd), rp.uniform(0.3, 1.0))
        on = _ss(_after(tn) / 0.5)
        fx.c += c
        fx.sbp += rp.uniform(10.0, 60.0) * on
        fx.hr += rp.uniform(-15.0, 10.0) * on
        fx.rr += rp.uniform(-3.0, 6.0) * on
        fx.spo2 -= rp.uniform(0.0, 4.0) * on
        fx.temp += rp.uniform(0.0, 0.9) * _ss((TG - tn - 4.0) / 12.0)
        fx.icu.append(tn + rp.uniform(0.25, 2.0))
        fx.burden = np.maximum(fx.burden, (tn <= TG).astype(float))
    elif kind == "minor":  # hypoglycaemia, post-ictal, TIA: resolves
        tn = float(rp.uniform(1.5, max(3.0, p.los - 2.0)))
        sh = _raised_cos(tn, rp.uniform(1.0, 6.0))
        fx.c += rp.uniform(0.7, 1.9) * sh
        fx.hr += rp.uniform(-5.0, 15.0) * sh
        fx.burden = np.maximum(fx.burden, sh)
    else:  # opioid narcosis: slow hypoventilation, reversed when noticed
        tn = float(rp.uniform(2.0, 30.0))
        tau = rp.uniform(1.0, 4.0)
        g = _ss(_after(tn) / tau)
        t_rev = tn + 0.3 * tau + rp.gamma(2.0, 0.7)
        g = g * np.exp(-_after(t_rev) / 0.7)
        fx.rr -= rp.uniform(3.0, 9.0) * g
        fx.c += rp.uniform(0.8, 2.4) * g
        fx.spo2 -= rp.uniform(3.0, 8.0) * g
        fx.hr -= rp.uniform(0.0, 10.0) * g
        fx.burden = np.maximum(fx.burden, g)
    fx.kind = "neuro-" + kind


DISEASE: dict[str, Callable] = {
    "sepsis": _fx_sepsis,
    "respiratory": _fx_resp,
    "haemorrhage": _fx_bleed,
    "heart_failure": _fx_hf,
    "neuro": _fx_neuro,
}


# ---------------------------------------------------------------------------
# Assembly of the latent physiology, oxygen loop, label
# ---------------------------------------------------------------------------
class _Truth:
    """Latent physiology of one stay plus its label."""


def _oxygen(rp, p, spo2_air, D):
    """Ward oxygen titration loop on the true saturation.

    Steps up one level when SpO2 has been below target for a noticing delay
    (shorter when very low); weans when comfortably above target for hours
    (faster for over-oxygenated scale-2 patients).  Returns true SpO2, the
    oxygen level, and the time maximal oxygen failed (ICU referral), if any.
    """
    notice = rp.exponential(0.8, 256).tolist()
    wean = rp.uniform(2.0, 8.0, 256).tolist()
    sa = spo2_air.tolist()
    Dl = np.clip(D, 0.0, 1.2).tolist()
    L = p.L_base
    below = above = low4 = 0.0
    ni = wi = 0
    icu = None
    out_s = [0.0] * N_GRID
    out_l = [0] * N_GRID
    start_thr = p.tlow
    wean_thr = p.tlow + 3.0
    for k in range(N_GRID):
        a = sa[k]
        s = a + max(0.0, 99.6 - a) * O2_EFF[L] * (1.0 - 0.45 * Dl[k])
        s = min(s, 100.0)
        out_s[k] = s
        out_l[k] = L
        if s < start_thr and L < 4:
            below += DT
            need = 0.1 + notice[ni % 256] * (0.3 if s < p.tlow - 5.0 else 1.0)
            if below >= need:
                L += 1
                below = 0.0
                ni += 1
        else:
            below = 0.0
        if p.L_base < L and s >= wean_thr:
            above += DT * (3.0 if (p.scale2 and s > p.thigh + 0.5) else 1.0)
            if above >= wean[wi % 256]:
                L -= 1
                above = 0.0
                wi += 1
        else:
            above = 0.0
        if L == 4 and s < p.tlow - 3.0:
            low4 += DT
            if icu is None and low4 >= 0.5 and TG[k] >= 0.0:
                icu = float(TG[k])
        else:
            low4 = 0.0
    return np.asarray(out_s), np.asarray(out_l), icu


def _assemble(rp: np.random.Generator, p: _Patient, fx: _Fx) -> _Truth:  # noqa: PLR0915
    clock = (p.admit_clock + TG) % 24.0
    ou = {k: _ou(rp, *v) for k, v in p.ou.items()}
    fever = np.clip(fx.temp, 0.0, None)
    hr_d = fx.hr + 9.0 * fever  # ~9 bpm per degree of fever
    if p.bb:
        hr_d = np.where(hr_d > 0, 0.45 * hr_d, hr_d)
    if p.af:
        hr_d = np.where(hr_d > 0, 1.1 * hr_d, hr_d)
    hr = p.hr0 + p.a_hr * np.cos(TWO_PI_24 * (clock - 15.0)) + ou["hr"] + hr_d
    rr = p.rr0 + p.a_rr * np.cos(TWO_PI_24 * (clock - 14.0)) + ou["rr"] + fx.rr + 1.0 * fever
    sbp = p.sbp0 + p.a_sbp * np.cos(TWO_PI_24 * (clock - 14.0)) + ou["sbp"] + fx.sbp
    temp = p.temp0 + p.a_temp * np.cos(TWO_PI_24 * (clock - 18.0)) + ou["temp"] + fx.temp
    D = np.clip(fx.D, 0.0, 1.6)
    spo2_air = (
        p.spo2_0
        + p.a_spo2 * np.cos(TWO_PI_24 * (clock - 14.0))
        + ou["spo2"]
        + fx.spo2
        - (16.0 * D + 4.0 * D * D)
    )
    hr = np.clip(hr, 25.0, 200.0)
    rr = np.clip(rr, 4.0, 50.0)
    sbp = np.clip(sbp, 40.0, 240.0)
    temp = np.clip(temp, 32.0, 42.0)
    spo2_air = np.clip(spo2_air, 45.0, 100.0)
    spo2, lvl, icu_o2 = _oxygen(rp, p, spo2_air, D)
    c = np.clip(fx.c + ou["c"] * np.clip(fx.c / 0.6, 0.0, 1.0), 0.0, None)
    cons = np.digitize(c, [0.5, 1.5, 2.5, 3.5])
    on_o2 = lvl > 0
    news = _news2_vec(rr, spo2, on_o2, sbp, hr, cons, temp, p.scale2)

    tr = _Truth()
    tr.p, tr.cohort, tr.kind = p, p.cohort, fx.kind or p.cohort
    tr.hr, tr.rr, tr.sbp, tr.spo2, tr.temp = hr, rr, sbp, spo2, temp
    tr.o2lvl, tr.on_o2, tr.cons, tr.news = lvl, on_o2, cons, news

    # Discharge: not before the planned length of stay, not on new oxygen,
    # and (for the acute cohorts) only after 12 h clear of active illness.
    ok = (fx.burden < 0.12) & (lvl <= p.L_base)
    window = 2.0 if p.cohort == "stable" else 12.0
    idx = np.arange(N_GRID)
    last_bad = np.maximum.accumulate(np.where(ok, -1, idx))
    run = (idx - last_bad) * DT
    cand = np.nonzero((p.los <= TG) & (run >= window))[0]
    discharge = float(TG[cand[0]]) if cand.size else T_MAX

    # Label candidates.
    k_last = I0 + round(LAST_EVENT_T / DT)
    cands: list[tuple[float, str]] = []
    hit = np.nonzero(news[I0 : k_last + 1] >= 7)[0]
    if hit.size:
        cands.append((float(TG[I0 + hit[0]]), "news2"))
    death = _first_sustained((sbp < 60.0) | (spo2 < 72.0) | (cons >= 4), 1.0)
    if death is not None:
        cands.append((death, "death"))
    if not p.ceiling:
        for t in [*fx.icu, icu_o2]:
            if t is not None:
                cands.append((float(t), "icu"))
        for t in (_first_sustained(sbp < 80.0, 1.0), _first_sustained(cons >= 3, 0.5)):
            if t is not None:
                cands.append((t, "icu"))
    cands = [c for c in cands if 0.0 <= c[0] <= LAST_EVENT_T and c[0] < discharge]
    tr.event_hour, tr.event_cause = (None, None)
    if cands:
        tr.event_hour, tr.event_cause = min(cands)
    tr.discharge = discharge
    tr.death = death
    return tr


def _simulate_stay(seed: int, i: int) -> _Truth:
    rp = np.random.default_rng([seed, i, PHYS_TAG])
    cohort = COHORTS[int(rp.choice(len(COHORTS), p=COHORT_P))]
    p = _sample_patient(rp, cohort)
    tr = None
    for attempt in range(8):
        fx = _Fx()
        _benign(rp, p, fx)
        if cohort != "stable":
            DISEASE[cohort](rp, p, fx, attempt)
        tr = _assemble(rp, p, fx)
        # Someone already at NEWS2 >= 7 on arrival would have gone to ICU
        # from the emergency department: redraw the illness.
        if tr.event_hour is None or tr.event_hour >= 1.0:
            break
    # Stay end.
    ev = tr.event_hour
    if ev is None:
        end = tr.discharge
    elif tr.event_cause == "death":
        end = ev + rp.uniform(0.05, 0.5)
    elif p.ceiling:  # ward-based care continues until death or discharge
        d = tr.death
        end = (
            d + rp.uniform(0.05, 0.5)
            if (d is not None and d > ev and d < tr.discharge)
            else tr.discharge
        )
    else:  # outreach review, then transfer
        end = min(ev + rp.uniform(0.1, 3.0), max(tr.discharge, ev + 0.1))
    end = min(end, T_MAX)
    if ev is not None and end <= ev + 0.02:
        end = ev + 0.05
    tr.end_hour = round(float(end), 4)
    if ev is not None:
        tr.event_hour = round(float(ev), 4)
    tr.id = f"ind-{seed}-{i:05d}"
    return tr


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------
class _Nurse:
    """Measurement process: noise, rounding, human habits and artefacts."""

    def __init__(self, tr: _Truth, rc: np.random.Generator) -> None:
        self.tr, self.rc = tr, rc
        self.rr_pref = rc.uniform(0.15, 0.6)  # fraction of "eyeballed" RR counts
        self.temp_bias = rc.normal(0.0, 0.12)  # device / technique offset
        self.miss_delirium = rc.uniform(0.15, 0.5)
        self.dementia_c = rc.uniform(0.05, 0.25) if tr.p.dementia else 0.0

    def measure(self, t: float, params) -> dict:
        rc, tr = self.rc, self.tr
        k = min(I0 + round(t / DT), N_GRID - 1)
        row: dict = {"hour": t}
        for name in params:
            if name == "heart_rate":
                x = tr.hr[k] + rc.normal(0.0, 6.0 if tr.p.af else 2.5)
                if rc.random() < (0.02 if tr.p.af else 0.01):  # motion / counting artefact
                    x = x * (rc.uniform(0.55, 0.75) if rc.random() < 0.3 else rc.uniform(1.3, 1.8))
                row[name] = float(min(max(round(x), 25), 220))
            elif name == "respiratory_rate":
                row[name] = float(self._rr(tr.rr[k]))
            elif name == "systolic_bp":
                x = tr.sbp[k] + rc.normal(0.0, 5.0)
                if rc.random() < 0.006:
                    x += rc.choice([-1.0, 1.0]) * rc.uniform(20.0, 40.0)
                row[name] = float(min(max(round(x), 40), 250))
            elif name == "spo2":
                x = tr.spo2[k] + rc.normal(0.0, 0.8)
                poor = tr.sbp[k] < 90.0 or tr.temp[k] < 35.5 or tr.hr[k] > 130.0
                if rc.random() < (0.06 if poor else 0.012):  # probe off / poor signal
                    x = min(x, 100.0) - rc.uniform(6.0, 25.0)
                row[name] = float(min(max(round(x), 50), 100))
                row["spo2_scale_2"] = bool(tr.p.scale2)
            elif name == "on_oxygen":
                v = bool(tr.on_o2[k])
                row[name] = (not v) if rc.random() < 0.008 else v
            elif name == "temperature":
                x = tr.temp[k] + self.temp_bias + rc.normal(0.0, 0.15)
                if rc.random() < 0.006:  # poorly placed tympanic probe
                    x = rc.uniform(34.8, 35.8)
                row[name] = round(float(x), 1)
            elif name == "consciousness":
                row[name] = self._avpu(int(tr.cons[k]))
        return row

    def _rr(self, x: float) -> int:
        rc = self.rc
        if 11.0 <= x <= 26.0 and rc.random() < self.rr_pref:
            # Digit preference: a glance rather than a 60-second count.
            if x < 15.0:
                return int(rc.choice([14, 16]))
            if x < 19.0:
                return int(rc.choice([16, 18], p=[0.4, 0.6]))
            if x < 23.0:
                return int(rc.choice([18, 20]))
            return int(rc.choice([20, 22, 24], p=[0.4, 0.3, 0.3]))
        return int(max(4, round(x + rc.normal(0.0, 1.2))))

    def _avpu(self, lvl: int) -> str:
        rc = self.rc
        if lvl == 0:
            if rc.random() < self.dementia_c + 0.003:
                return "C"
            return "A"
        if lvl == 1 and rc.random() < self.miss_delirium:
            return "A"  # hypoactive delirium missed
        if rc.random() < 0.2:
            lvl = min(max(lvl + int(rc.choice([-1, 1])), 1), 4)
        return AVPU[lvl]


def _finish_rows(rows: list[dict], end: float) -> list[dict]:
    """Round times to the minute, merge same-minute rows, drop rows >= end."""
    merged: dict[float, dict] = {}
    for raw in rows:
        h = round(raw["hour"] * 60.0) / 60.0
        if h < 0.0 or h >= end:
            continue
        r = dict(raw)
        r["hour"] = h
        if h in merged:
            merged[h].update(r)
        else:
            merged[h] = r
    return [merged[h] for h in sorted(merged)]


def _clock(tr: _Truth, t: float) -> float:
    return (tr.p.admit_clock + t) % 24.0


def _is_night(tr: _Truth, t: float) -> bool:
    c = _clock(tr, t)
    return c >= 22.0 or c < 6.0


def _omit(rc, params, probs) -> tuple:
    """Drop parameters from a nominal full set (incomplete observations)."""
    keep = []
    drop_ox = rc.random() < probs.get("spo2", 0.0)
    for name in params:
        if name in ("spo2", "on_oxygen"):
            if not drop_ox:
                keep.append(name)
        elif rc.random() >= probs.get(name, 0.0):
            keep.append(name)
    return tuple(keep) or ("heart_rate",)


WARD_OMIT = {
    "respiratory_rate": 0.07,
    "consciousness": 0.05,
    "temperature": 0.10,
    "systolic_bp": 0.02,
    "heart_rate": 0.01,
    "spo2": 0.02,
}


# ---------------------------------------------------------------------------
# Charting modes
# ---------------------------------------------------------------------------
def _obs_score(last: dict, scale2: bool) -> tuple[int, bool]:
    comps = news2_components(
        last.get("respiratory_rate"),
        last.get("spo2"),
        last.get("on_oxygen"),
        last.get("systolic_bp"),
        last.get("heart_rate"),
        last.get("consciousness"),
        last.get("temperature"),
        scale2,
    )
    return sum(comps), max(comps) >= 3


def _chart_ward(tr: _Truth, rc: np.random.Generator) -> list[dict]:  # noqa: PLR0915
    """RCP escalation charting driven by the observed score, with human noise."""
    nurse = _Nurse(tr, rc)
    end = tr.end_hour
    scale2 = tr.p.scale2
    min_iv = float(rc.choice([12.0, 8.0, 6.0], p=[0.5, 0.25, 0.25]))  # local minimum at NEWS2 0
    low_iv = float(rc.choice([4.0, 6.0]))  # local choice for NEWS2 1-2
    monitor_p = rc.uniform(0.3, 0.9)  # how often monitor readings get transcribed
    night_skip = rc.uniform(0.3, 0.8)  # "let them sleep"
    rows: list[dict] = []
    last: dict = {}
    heap: list = []
    seq = [0]

    def push(t: float, kind: str, tok: int = -1) -> None:
        seq[0] += 1
        heapq.heappush(heap, (t, seq[0], kind, tok))

    tok = 0
    t_first = rc.uniform(0.05, 0.6)
    push(t_first, "full", tok)
    full_due = t_first
    if tr.p.surgical and rc.random() < 0.7:  # post-op protocol observations
        for d in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0):
            push(t_first + d + rc.normal(0.0, 0.08), "postop")
    t = rc.exponential(18.0)
    while t < end:  # unscheduled spot checks
        push(t, str(rc.choice(["spot_ox", "bp", "temp", "hr"], p=[0.4, 0.3, 0.15, 0.15])))
        t += rc.exponential(18.0)
    if tr.p.bb or tr.p.sbp0 > 150.0 or tr.p.af:  # BP/pulse before cardiac drugs
        day = 0.0
        while day < end + 24.0:
            for hh in (8.0, 18.0):
                tt = day + ((hh - tr.p.admit_clock) % 24.0) + rc.normal(0.0, 0.3)
                if 0.0 < tt < end and rc.random() < 0.5:
                    push(tt, "bp")
            day += 24.0

    while heap:
        t, _, kind, ktok = heapq.heappop(heap)
        if t >= end:
            break
        if kind in ("full", "monitor") and ktok != tok:
            continue  # superseded schedule
        if kind == "full":
            params = _omit(rc, CORE, WARD_OMIT)
        elif kind == "postop":
            params = _omit(rc, KIND_PARAMS["postop"], {"respiratory_rate": 0.15})
        else:
            params = KIND_PARAMS[kind.replace("_re", "")]
        row = nurse.measure(t, params)
        rows.append(row)
        last.update({k: v for k, v in row.items() if k != "hour"})
        score, red = _obs_score(last, scale2)
        row_red = (
            max(
                news2_components(
                    row.get("respiratory_rate"),
                    row.get("spo2"),
                    row.get("on_oxygen"),
                    row.get("systolic_bp"),
                    row.get("heart_rate"),
                    row.get("consciousness"),
                    row.get("temperature"),
                    scale2,
                )
            )
            >= 3
        )

        if kind == "full":
            if score >= 7:
                iv = rc.uniform(0.25, 0.5)
            elif score >= 5 or red:
                iv = 1.0
            elif score >= 3:
                iv = 4.0
            elif score >= 1:
                iv = low_iv
            else:
                iv = min_iv
            due = t + iv
            if iv >= 4.0:
                if rc.random() < 0.6:  # snap to the ward's 2-hourly round times
                    c = _clock(tr, due)
                    due += round(c / 2.0) * 2.0 - c
                c = _clock(tr, due)
                if score <= 4 and (c >= 23.0 or c < 5.5) and rc.random() < night_skip:
                    due += ((6.0 - c) % 24.0) + rc.uniform(0.0, 0.75)
                late = min(rc.lognormal(math.log(0.3), 0.8), 3.0) - rc.uniform(0.0, 0.4)
            else:
                late = min(rc.lognormal(math.log(0.08), 0.8), 0.6 * iv)
                if _is_night(tr, due):
                    late *= 1.5
            due = max(due + late, t + 0.1)
            miss_p = 0.03 if score >= 5 else (0.12 if _is_night(tr, due) else 0.05)
            n_miss = 0
            while n_miss < 2 and rc.random() < miss_p:
                due += iv
                n_miss += 1
            tok += 1
            push(due, "full", tok)
            full_due = due
            if score >= 5:  # monitored: transcribe some monitor readings
                step = 0.25 if score >= 7 else 0.5
                pm = monitor_p if score >= 7 else 0.5 * monitor_p
                tt = t + step
                while tt < due - 0.05:
                    if rc.random() < pm:
                        push(tt + rc.normal(0.0, 0.03), "monitor", tok)
                    tt += step
            # Rechecks prompted by this set.
            if row.get("temperature", 0.0) >= 38.0 and rc.random() < 0.5:
                push(t + rc.uniform(0.75, 1.5), "temp_re")
            if row.get("systolic_bp", 200.0) <= 100.0 and rc.random() < 0.6:
                push(t + rc.uniform(0.2, 0.6), "bp_re")
            if row.get("spo2", 100.0) < tr.p.tlow and rc.random() < 0.6:
                push(t + rc.uniform(0.25, 1.0), "spot_ox_re")
            if row.get("consciousness", "A") != "A" and rc.random() < 0.7:
                for d in (1.0, 2.0, 3.0):
                    if t + d < due:
                        push(t + d + rc.normal(0.0, 0.1), "neuro_re")
        elif kind in ("spot_ox", "bp", "hr", "temp", "postop") and row_red and full_due - t > 0.5:
            # A red reading on a spot check prompts an early full set.
            tok += 1
            full_due = t + rc.uniform(0.1, 0.5)
            push(full_due, "full", tok)
    return _finish_rows(rows, end)


def _chart_fixed(tr: _Truth, rc: np.random.Generator) -> list[dict]:
    """Per-patient schedule chosen independently of acuity."""
    nurse = _Nurse(tr, rc)
    end = tr.end_hour
    iv = [1.0, 2.0, 4.0, 6.0, 8.0, 12.0, None][
        int(rc.choice(7, p=[0.1, 0.15, 0.3, 0.2, 0.08, 0.07, 0.1]))
    ]
    full_p = rc.uniform(0.35, 0.85)
    miss_p = rc.uniform(0.02, 0.12)
    partial_kinds = ["spot_ox", "bp", "temp", "hr", "resp", "partial_full"]
    partial_w = [0.35, 0.2, 0.15, 0.1, 0.05, 0.15]
    rows: list[dict] = []
    t0 = rc.uniform(0.05, 0.6)
    n = 0
    t = t0
    while t < end:
        if n == 0 or rc.random() >= miss_p:
            if n == 0 or rc.random() < full_p:
                params = CORE
            else:
                kind = str(rc.choice(partial_kinds, p=partial_w))
                if kind == "partial_full":
                    params = _omit(
                        rc,
                        CORE,
                        {
                            "respiratory_rate": 0.5,
                            "consciousness": 0.5,
                            "temperature": 0.5,
                            "systolic_bp": 0.3,
                        },
                    )
                else:
                    params = KIND_PARAMS[kind]
            rows.append(nurse.measure(t, params))
        n += 1
        if iv is None:
            t += float(np.clip(rc.gamma(1.5, 3.0), 0.25, 14.0))
        else:
            t = max(t + 0.05, t0 + n * iv + rc.normal(0.0, 0.12 * min(iv, 2.0)))
    return _finish_rows(rows, end)


def _chart_inverse(tr: _Truth, rc: np.random.Generator) -> list[dict]:
    """Sicker (true NEWS2) -> longer gaps, more misses, more partial rows."""
    nurse = _Nurse(tr, rc)
    end = tr.end_hour
    rows: list[dict] = []
    t = rc.uniform(0.05, 0.6)
    first = True
    while t < end:
        k = min(I0 + round(t / DT), N_GRID - 1)
        sc = int(tr.news[k])
        if first or rc.random() >= min(0.4, 0.03 + 0.035 * sc):
            if first or rc.random() < max(0.1, 0.85 - 0.1 * sc):
                params = CORE
            else:
                params = KIND_PARAMS[
                    str(rc.choice(["spot_ox", "hr", "temp", "bp"], p=[0.4, 0.25, 0.15, 0.2]))
                ]
            rows.append(nurse.measure(t, params))
        first = False
        if sc == 0:
            iv = rc.uniform(1.0, 2.5)
        elif sc <= 2:
            iv = rc.uniform(2.0, 4.0)
        elif sc <= 4:
            iv = rc.uniform(4.0, 7.0)
        elif sc <= 6:
            iv = rc.uniform(6.0, 10.0)
        else:
            iv = rc.uniform(8.0, 14.0)
        if _is_night(tr, t):
            iv *= 1.4
        t += iv
    return _finish_rows(rows, end)


CHARTERS = {"ward": _chart_ward, "fixed": _chart_fixed, "inverse": _chart_inverse}
CHART_CODE = {"ward": 1, "fixed": 2, "inverse": 3}


def _stay_dict(tr: _Truth, rows: list[dict]) -> dict:
    return {
        "id": tr.id,
        "cohort": tr.cohort,
        "event_hour": tr.event_hour,
        "end_hour": tr.end_hour,
        "rows": rows,
    }


def _chart(tr: _Truth, seed: int, i: int, charting: str) -> list[dict]:
    rc = np.random.default_rng([seed, i, CHART_TAG, CHART_CODE[charting]])
    return CHARTERS[charting](tr, rc)


def generate(n: int, seed: int, charting: str) -> list[dict]:
    """Generate ``n`` stays.

    ``charting`` is ``"ward"``, ``"fixed"`` or ``"inverse"``.  The same
    ``seed`` gives the same physiology, cohort, ``event_hour`` and
    ``end_hour`` for every charting mode; only the rows differ.
    """
    if charting not in CHARTERS:
        raise ValueError(f"charting must be one of {CHARTING_MODES}, got {charting!r}")
    if n < 0 or seed < 0:
        raise ValueError("n and seed must be non-negative")
    out = []
    for i in range(n):
        tr = _simulate_stay(seed, i)
        out.append(_stay_dict(tr, _chart(tr, seed, i, charting)))
    return out


# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------
def _summary(n: int = 300, seed: int = 1) -> None:  # noqa: PLR0915
    t0 = time.time()
    truths = [_simulate_stay(seed, i) for i in range(n)]
    t_phys = time.time() - t0

    # Self-check: scalar and vectorised NEWS2 agree.
    rng = np.random.default_rng(0)
    for _ in range(2000):
        v = (
            rng.uniform(4, 40),
            rng.uniform(70, 100),
            bool(rng.random() < 0.5),
            rng.uniform(50, 240),
            rng.uniform(30, 170),
            int(rng.integers(0, 5)),
            rng.uniform(33.5, 41.0),
            bool(rng.random() < 0.3),
        )
        a = news2(v[0], v[1], v[2], v[3], v[4], AVPU[v[5]], v[6], v[7])
        b = _news2_vec(*[np.array([x]) for x in v[:7]], v[7])[0]
        if a != b:
            raise RuntimeError(f"NEWS2 scalar/vector mismatch {v}: {a} != {b}")

    print(f"independent_sim summary: n={n} seed={seed}  (physiology {t_phys:.1f}s)")
    ev = [tr for tr in truths if tr.event_hour is not None]
    print(f"event rate: {len(ev)}/{n} = {len(ev) / n:.1%}")
    print(f"{'cohort':<14}{'stays':>6}{'events':>8}{'rate':>8}{'med end_h':>10}")
    for c in COHORTS:
        g = [tr for tr in truths if tr.cohort == c]
        e = [tr for tr in g if tr.event_hour is not None]
        if g:
            print(
                f"{c:<14}{len(g):>6}{len(e):>8}{len(e) / len(g):>8.1%}"
                f"{np.median([tr.end_hour for tr in g]):>10.1f}"
            )
    print("event causes:", dict(Counter(tr.event_cause for tr in ev)))
    if ev:
        eh = np.array([tr.event_hour for tr in ev])
        print(
            f"event hour: median {np.median(eh):.1f}, "
            f"<12h {np.mean(eh < 12):.0%}, >48h {np.mean(eh > 48):.0%}"
        )
        # Gradual: true NEWS2 >= 5 for most of the 3 h before the event.
        # Abrupt: true NEWS2 never above 4 from 6 h to 2 h before the event.
        gradual = abrupt = 0
        for tr in ev:
            k = I0 + round(tr.event_hour / DT)
            last3 = tr.news[max(k - 36, 0) : k]
            quiet = tr.news[max(k - 72, 0) : max(k - 24, 1)]
            if last3.size and (last3 >= 5).mean() > 0.8:
                gradual += 1
            if quiet.size and quiet.max() <= 4:
                abrupt += 1
        print(
            f"gradual (true NEWS2>=5 most of last 3h): {gradual}/{len(ev)}; "
            f"abrupt (true NEWS2<=4 from -6h to -2h): {abrupt}/{len(ev)}"
        )
    print(
        "subtypes:",
        dict(sorted(Counter(tr.kind for tr in truths if tr.cohort != "stable").items())),
    )
    stable = [tr for tr in truths if tr.cohort == "stable"]
    print(
        "stable chronic/transient flags:",
        {
            "copd_scale2": sum(tr.p.scale2 for tr in stable),
            "af": sum(tr.p.af for tr in stable),
            "beta_blocked": sum(tr.p.bb for tr in stable),
            "hypotension": sum(tr.p.hypotension for tr in stable),
            "dementia": sum(tr.p.dementia for tr in stable),
        },
    )
    print(
        f"{'charting':<9}{'rows/stay':>10}{'median':>8}{'rows/24h':>9}{'partial':>9}"
        f"{'r/24h last12h pre-event':>25}{'r/24h non-event':>17}{'sec':>6}"
    )
    for mode in CHARTING_MODES:
        t1 = time.time()
        rows_all = [_chart(tr, seed, i, mode) for i, tr in enumerate(truths)]
        dt = time.time() - t1
        counts = np.array([len(r) for r in rows_all])
        dens = np.array([len(r) / tr.end_hour * 24 for r, tr in zip(rows_all, truths, strict=True)])
        n_rows = counts.sum()
        partial = sum(any(k not in row for k in CORE) for rows in rows_all for row in rows)
        pre = []
        for rows, tr in zip(rows_all, truths, strict=True):
            if tr.event_hour is not None and tr.event_hour >= 12:
                pre.append(sum(tr.event_hour - 12 <= r["hour"] < tr.event_hour for r in rows) * 2)
        non = dens[[tr.event_hour is None for tr in truths]]
        print(
            f"{mode:<9}{counts.mean():>10.1f}{np.median(counts):>8.0f}{dens.mean():>9.1f}"
            f"{partial / n_rows:>9.1%}{(np.mean(pre) if pre else float('nan')):>25.1f}"
            f"{non.mean():>17.1f}{dt:>6.1f}"
        )
    # Same physiology across charting modes.
    a = generate(5, seed, "ward")
    b = generate(5, seed, "inverse")
    key = [(s["event_hour"], s["end_hour"], s["cohort"]) for s in a]
    if key != [(s["event_hour"], s["end_hour"], s["cohort"]) for s in b]:
        raise RuntimeError("physiology differs between charting modes")


if __name__ == "__main__":
    _summary(300, 1)
