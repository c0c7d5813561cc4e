"""Verdicts read trajectory arrays and say what they show (THEORY.md §2, §7).

Pure functions of arrays: they take any *trajectory-like* object ``traj`` with
``traj[name] -> (N,) float64 tensor`` (columns ``t``, ``h``, ``H``, ``dHdt``,
``dHdt_autodiff``, ``residual``, ``W_norm``, ...), a ``traj.meta`` dict and optionally
``traj.jumps``. They never import :mod:`ode` and never integrate; the refinement test,
which must re-simulate, is orchestrated in :mod:`ode.refinement` and classified here by
:func:`classify_refinement`.

**Lyapunov verdict.** With ΔH_n = H_{n+1} − H_n between consecutive accepted steps,

.. math::
    \\text{tol}_n = \\max\\big(10\\,\\text{eps}\\,\\max(|H_n|,|H_{n+1}|),\\;
                   c\\,(\\text{atol} + \\text{rtol}\\max(|H_n|,|H_{n+1}|))\\big),\\qquad c = 10,

(the second term only for adaptive solvers: each accepted step has local error ≤ atol + rtol·|y|
per component; fixed-step runs get the rounding term only, so any real rise is flagged
and sent to the refinement test). H is Lyapunov along the run iff ΔH_n ≤ tol_n for all n
and the pointwise autodiff Ḣ never exceeds ``POINTWISE_TOL`` (relative). Separately,
``closed_form_ok`` says whether the system's closed-form −Δ *is* the autodiff Ḣ at every
sample (relative mismatch ≤ ``HDOT_MISMATCH_TOL``): a wrong Δ (halved, a dropped term) fails
it even where H still falls.

**Stationarity verdict.** "stationary" iff the problem has stationary points, the run did
not fail, the monitors stayed bounded, and the final residual ≤ max(atol, rtol·r₀)
(defaults 1e-6, 1e-6). A problem without stationary points (logistic on separable data) is
never reported stationary, however small its gradient got; its verdict says what ‖W‖ did
(:func:`growth`), measured, because the theory predicts ‖W‖ → ∞ there.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

EPS = torch.finfo(torch.float64).eps
ROUNDING_FACTOR = 10.0     # rises below 10·eps·|H| are float64 rounding of H itself
SOLVER_FACTOR = 10.0       # c in tol_n: a step's H error is a few local errors at most
POINTWISE_TOL = 1e-9       # autodiff Ḣ > 1e-9·(1 + |H|) at a sample is a pointwise violation
REFINE_SHRINK = 0.7        # a refinement ratio below this means "shrinks"; 0.5 (Euler, h/2) to 0.1 (rtol/10)
# |−Δ − autodiff Ḣ| / |Δ|: both are float64 sums of O(1) terms, measured ≤ 3e-10 on every C1 run;
# a wrong Δ (a factor, a dropped or flipped term) is off by O(1), so 1e-6 separates the two by 10³ both ways.
HDOT_MISMATCH_TOL = 1e-6
STATIONARY_ATOL = 1e-6     # the stationarity verdict: final residual ≤ max(atol, rtol·r₀)
STATIONARY_RTOL = 1e-6


def _col(traj, name: str) -> torch.Tensor:
    return traj[name].to(torch.float64)


def _meta(traj) -> dict:
    return getattr(traj, "meta", {}) or {}


def step_tolerance(H0: torch.Tensor, H1: torch.Tensor, meta: dict) -> torch.Tensor:
    """tol_n per step (see the module docstring)."""
    scale = torch.maximum(H0.abs(), H1.abs())
    tol = ROUNDING_FACTOR * EPS * scale
    cfg = meta.get("config", {})
    if meta.get("adaptive", True) and "rtol" in cfg:
        tol = torch.maximum(tol, SOLVER_FACTOR * (cfg["atol"] + cfg["rtol"] * scale))
    return tol


def rises(traj) -> torch.Tensor:
    """ΔH_n = H_{n+1} − H_n between consecutive samples (N−1,)."""
    H = _col(traj, "H")
    return H[1:] - H[:-1]


def positive_variation(traj) -> float:
    """Σ_n (ΔH_n)_+ over rises above rounding (10·eps·|H|): → ∫(Ḣ)_+ dt for a real rise,
    → 0 at the method's order for solver error. Comparable across step sizes, unlike a
    single step's rise (which shrinks with h even for a real violation)."""
    H = _col(traj, "H")
    d = H[1:] - H[:-1]
    rounding = ROUNDING_FACTOR * EPS * torch.maximum(H[1:].abs(), H[:-1].abs())
    return float(torch.where(d > rounding, d, torch.zeros_like(d)).sum())


def max_rel_rise(traj) -> float:
    """max_n ΔH_n / max(|H_n|, tiny), clamped at 0: the largest relative rise of H."""
    H = _col(traj, "H")
    if H.numel() < 2:
        return 0.0
    d = (H[1:] - H[:-1]) / H[:-1].abs().clamp_min(1e-300)
    return max(0.0, float(d.max()))


@dataclass(frozen=True)
class LyapunovVerdict:
    holds: bool                 # no step rise above tol_n and no pointwise Ḣ > 0
    n_samples: int
    n_violations: int           # steps with ΔH_n > tol_n
    max_rise: float             # max ΔH_n (≥ 0)
    max_rel_rise: float
    positive_variation: float
    first_violation_t: float | None
    max_pointwise_hdot: float   # max autodiff Ḣ over samples (NaN if not recorded)
    pointwise_ok: bool
    max_hdot_mismatch: float    # max |−Δ − autodiff Ḣ| / (|Δ| + 1e-12·(1+|H|)): closed form vs AD
    closed_form_ok: bool | None  # max_hdot_mismatch ≤ HDOT_MISMATCH_TOL (None: autodiff not recorded)
    max_jump_rise: float        # max (H_after − H_before) over projection jumps
    tolerance: str

    def summary(self) -> str:
        word = "holds" if self.holds else "VIOLATED"
        where = f", first at t={self.first_violation_t:.4g}" if self.first_violation_t is not None else ""
        closed = ("not checked" if self.closed_form_ok is None else
                  f"{'agrees' if self.closed_form_ok else 'DISAGREES'} (max rel mismatch {self.max_hdot_mismatch:.1g})")
        return (f"H Lyapunov {word}: {self.n_violations}/{max(self.n_samples - 1, 0)} step rises above tol{where}; "
                f"max rise {self.max_rise:.3g} (rel {self.max_rel_rise:.3g}); max pointwise dH/dt {self.max_pointwise_hdot:.3g}; "
                f"closed-form -Delta vs autodiff dH/dt {closed}")

    def to_dict(self) -> dict:
        return asdict(self)


def lyapunov_verdict(traj) -> LyapunovVerdict:
    """Is H non-increasing between accepted steps (within tol_n), and Ḣ ≤ 0 pointwise?"""
    meta = _meta(traj)
    H, t = _col(traj, "H"), _col(traj, "t")
    d = H[1:] - H[:-1]
    tol = step_tolerance(H[:-1], H[1:], meta)
    bad = d > tol
    n_bad = int(bad.sum())
    first = float(t[:-1][bad][0]) if n_bad else None
    ad = _col(traj, "dHdt_autodiff")
    finite = torch.isfinite(ad)
    max_pt = float(ad[finite].max()) if bool(finite.any()) else math.nan
    pointwise_ok = not bool((ad[finite] > POINTWISE_TOL * (1 + H[finite].abs())).any())
    an = _col(traj, "dHdt")
    mism = ((an - ad).abs() / (an.abs() + 1e-12 * (1 + H.abs())))[finite]
    max_mism = float(mism.max()) if mism.numel() else math.nan
    jumps = getattr(traj, "jumps", None) or {}
    jr = (jumps["H_after"] - jumps["H_before"]) if "H_after" in jumps and jumps["H_after"].numel() else torch.zeros(1)
    cfg = meta.get("config", {})
    tol_s = (f"tol_n = max(10 eps |H|, 10 (atol + rtol |H|)), rtol={cfg.get('rtol')}, atol={cfg.get('atol')}"
             if meta.get("adaptive", True) else "tol_n = 10 eps |H| (fixed step: no solver tolerance)")
    return LyapunovVerdict(
        holds=n_bad == 0 and pointwise_ok, n_samples=int(H.numel()), n_violations=n_bad,
        max_rise=max(0.0, float(d.max())) if d.numel() else 0.0, max_rel_rise=max_rel_rise(traj),
        positive_variation=positive_variation(traj), first_violation_t=first,
        max_pointwise_hdot=max_pt, pointwise_ok=pointwise_ok,
        max_hdot_mismatch=max_mism,
        closed_form_ok=None if math.isnan(max_mism) else max_mism <= HDOT_MISMATCH_TOL,
        max_jump_rise=max(0.0, float(jr.max())), tolerance=tol_s)


@dataclass(frozen=True)
class StationarityVerdict:
    stationary: bool
    reason: str
    initial_residual: float
    final_residual: float
    min_residual: float
    tolerance: float
    measure: str

    def summary(self) -> str:
        word = "stationary" if self.stationary else "NOT stationary"
        return f"{word}: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)


def bounded(traj, growth: float = 10.0) -> bool:
    """A crude boundedness monitor for a finite run: ‖W‖, ‖S‖, ‖P‖ finite, and the maximum
    over the second half of the run at most ``growth`` × the maximum over the first half
    (+1). Transients (Adam's v ≈ g² early on) pass; a norm still growing by an order of
    magnitude at the end of the run does not. It cannot prove boundedness — nothing finite can."""
    for name in ("W_norm", "S_norm", "P_norm"):
        x = _col(traj, name)
        if not bool(torch.isfinite(x).all()):
            return False
        half = max(1, x.numel() // 2)
        if float(x[half - 1:].max()) > growth * float(x[:half].max()) + 1.0:
            return False
    return True


def growth(traj) -> dict:
    """What ‖W‖ did: its values at the start, the middle and the end of the run, and whether it
    still grew over the second half (by more than 1e-6 relative; float64 rounding is ~1e-16).

    On a problem without stationary points (separable logistic) the flow must escape to
    infinity (‖W‖ ~ log t for gradient flow): a run whose ‖W‖ stopped growing there contradicts
    the problem's own statement, so callers can check ``growing`` instead of assuming it.
    """
    w = _col(traj, "W_norm")
    t = _col(traj, "t")
    mid = len(w) // 2
    w0, wm, w1 = float(w[0]), float(w[mid]), float(w[-1])
    growing = bool(w1 > wm * (1 + 1e-6)) and bool(torch.isfinite(w).all())
    return {"W_norm_start": w0, "W_norm_mid": wm, "W_norm_end": w1, "t_mid": float(t[mid]), "t_end": float(t[-1]),
            "growing": growing,
            "summary": (f"||W|| {w0:.3g} -> {wm:.3g} (t={float(t[mid]):.3g}) -> {w1:.3g} (t={float(t[-1]):.3g}): "
                        + ("still growing" if growing else "NOT growing over the second half"))}


def stationarity_verdict(traj, *, atol: float = STATIONARY_ATOL, rtol: float = STATIONARY_RTOL) -> StationarityVerdict:
    """Did the run reach a stationary point (residual → 0, bounded, and one exists)?"""
    meta = _meta(traj)
    r = _col(traj, "residual")
    r0, r1, rmin = float(r[0]), float(r[-1]), float(r.min())
    tol = max(atol, rtol * r0)
    measure = meta.get("stationarity_name", "residual")
    v = dict(initial_residual=r0, final_residual=r1, min_residual=rmin, tolerance=tol, measure=measure)
    if not meta.get("has_stationary_points", True):
        g = growth(traj)
        return StationarityVerdict(False, f"{meta.get('problem', 'the problem')} has no stationary points "
                                          f"({measure} {r0:.3g} -> {r1:.3g}; {g['summary']})", **v)
    if str(meta.get("status", "")).startswith("failed"):
        return StationarityVerdict(False, f"the run failed: {meta['status']}", **v)
    if not bounded(traj):
        return StationarityVerdict(False, "the trajectory is not bounded (Theorem 4.5 assumes bounded solutions)", **v)
    if r1 <= tol:
        return StationarityVerdict(True, f"{measure} {r0:.3g} -> {r1:.3g} <= tol {tol:.1g}", **v)
    # Say what the second half of the run did; whether a slow fall is a stall needs a longer run.
    fall = float(r[len(r) // 2]) / r1 if r1 > 0 else math.inf
    trend = (f"fell only {fall:.3g}x over the second half: stalled or slow" if fall < 2
             else f"still decreasing, {fall:.3g}x over the second half")
    return StationarityVerdict(False, f"{measure} {r0:.3g} -> {r1:.3g} > tol {tol:.1g} at t={float(traj['t'][-1]):.4g} ({trend})", **v)


BLIND_RATIO = 1e-2         # ‖PᵀG‖/‖G‖ at or below this at the end of a run: the subspace is (nearly) blind
RESTORE_FACTOR = 10.0      # the ratio rising ×10 above its running minimum, back above BLIND_RATIO: restored


@dataclass(frozen=True)
class BlindnessVerdict:
    """Is a non-stationary run parked at a spurious equilibrium (the subspace blind to ∇L), or only
    blind for now? ``equilibrium`` needs all three: blind at the end, the residual not still falling,
    and no restoration of the signal over the second half (a jump rule's new P, an escape)."""

    final_ratio: float           # ‖PᵀG‖/‖G‖ at the last sample
    restorations: int            # second half: times the ratio rose ×RESTORE_FACTOR over its running minimum
    still_decreasing: bool       # the residual fell ≥ 2× over the second half
    blind: bool
    equilibrium: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def blindness_verdict(traj, *, blind_ratio: float = BLIND_RATIO) -> BlindnessVerdict:
    """Read ‖PᵀG‖/‖G‖ (``proj_grad_norm``/``grad_norm``) and the residual's second-half trend.

    A run that ends blind while its residual still falls, or whose signal came back during the second
    half (each jump of ``random_jump`` or ``periodic_svd`` does), is *not* at an equilibrium: P is
    blind between events, which is a transient, not the attracting blind set of claims C4 and C6.
    """
    g, pg, r = _col(traj, "grad_norm"), _col(traj, "proj_grad_norm"), _col(traj, "residual")
    ratio = pg / g.clamp_min(1e-300)
    final = float(ratio[-1])
    half = ratio[len(ratio) // 2:]
    # jumps are logged between segments: a jump's "after" counts as a sample of the ratio
    restorations, low = 0, math.inf
    for x in half.tolist():
        if x >= RESTORE_FACTOR * low and x > blind_ratio:
            restorations += 1
            low = x
        low = min(low, x)
    jumps = getattr(traj, "jumps", None) or {}
    t = _col(traj, "t")
    t_half = float(t[len(t) // 2])
    if "t" in jumps and len(jumps["t"]):
        for tj, before, after in zip(jumps["t"].tolist(), jumps["proj_grad_before"].tolist(),
                                     jumps["proj_grad_after"].tolist()):
            if tj >= t_half and after >= RESTORE_FACTOR * max(before, 1e-300):
                restorations += 1
    r1 = float(r[-1])
    still = r1 > 0 and float(r[len(r) // 2]) / r1 >= 2.0
    blind = final <= blind_ratio
    eq = blind and not still and restorations == 0
    if not blind:
        reason = f"not blind: ||P^T grad L||/||grad L|| = {final:.2g} at the end"
    elif eq:
        reason = (f"||P^T grad L||/||grad L|| = {final:.1g} at the end, the residual no longer falling and the signal "
                  f"never restored over the second half: a spurious equilibrium of the projection flow")
    else:
        why = []
        if restorations:
            why.append(f"the signal came back {restorations} time(s) over the second half (a jump or an escape "
                       f"restores it)")
        if still:
            why.append("the residual is still decreasing")
        reason = (f"||P^T grad L||/||grad L|| = {final:.1g} at the end, but " + " and ".join(why)
                  + ": blind for now, not an equilibrium")
    return BlindnessVerdict(final, restorations, still, blind, eq, reason)


@dataclass(frozen=True)
class RefinementVerdict:
    kind: str                    # "no rise" | "solver error" | "real violation" | "inconclusive"
    levels: list = field(default_factory=list)   # [{"param": .., "positive_variation": .., "max_rise": ..}]
    ratios: list = field(default_factory=list)   # PV_{k+1}/PV_k
    explanation: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def classify_refinement(levels: list[dict], *, vanish: float = 1e-14) -> RefinementVerdict:
    """Classify an apparent rise of H from runs at successively refined step / tolerance.

    ``levels``: dicts with ``param`` (step size or rtol), ``positive_variation`` (Σ rises)
    and ``max_rise``, coarse to fine. A solver artefact shrinks at the method's order
    (every ratio PV_{k+1}/PV_k ≤ REFINE_SHRINK); a real violation persists (every ratio
    > REFINE_SHRINK: PV → ∫(Ḣ)_+ dt > 0). Anything else is inconclusive.
    """
    pv = [float(l["positive_variation"]) for l in levels]
    if max(pv) <= vanish:
        return RefinementVerdict("no rise", list(levels), [], "no rise of H above rounding at any level")
    if pv[-1] <= vanish:
        return RefinementVerdict("solver error", list(levels), [], f"the rise vanishes on refinement: PV {pv}")
    ratios = [pv[k + 1] / pv[k] if pv[k] > 0 else math.inf for k in range(len(pv) - 1)]
    if all(r <= REFINE_SHRINK for r in ratios):
        return RefinementVerdict("solver error", list(levels), ratios,
                                 f"the rise shrinks on refinement (PV ratios {', '.join(f'{r:.3g}' for r in ratios)})")
    if all(r > REFINE_SHRINK for r in ratios):
        return RefinementVerdict("real violation", list(levels), ratios,
                                 f"the rise persists on refinement (PV {pv[0]:.3g} -> {pv[-1]:.3g}, ratios "
                                 f"{', '.join(f'{r:.3g}' for r in ratios)})")
    return RefinementVerdict("inconclusive", list(levels), ratios, f"mixed refinement ratios {ratios}")
