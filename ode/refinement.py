"""The refinement test (THEORY.md §7.4): is an apparent rise of H solver error or real?

Re-simulate the same :class:`~ode.spec.RunSpec` at ``levels`` successively refined
settings — adaptive methods: rtol and atol ÷ 10 per level; fixed-step methods: h ÷ 2 per
level — and compare the positive variation PV = Σ(ΔH_n)_+ (see
:func:`osd_theory.verdicts.positive_variation`). Solver error shrinks at the method's
order (ratios ≈ 10^{-p/(p+1)} per rtol decade, 2^{-p} per halving); a real violation
persists (PV → ∫(Ḣ)_+ dt). The classification itself is
:func:`osd_theory.verdicts.classify_refinement`.
"""
from __future__ import annotations

from osd_theory.verdicts import RefinementVerdict, classify_refinement, positive_variation

from ode.integrate import INTEGRATORS
from ode.spec import RunSpec, run_spec

RTOL_FACTOR = 10.0   # per level, adaptive
STEP_FACTOR = 2.0    # per level, fixed step


def refined_configs(spec: RunSpec, levels: int):
    """The spec at each refinement level, coarse (the given config) to fine, with its parameter."""
    adaptive = INTEGRATORS.get(spec.config.method).adaptive
    for k in range(levels):
        if adaptive:
            s = spec.with_config(rtol=spec.config.rtol / RTOL_FACTOR ** k, atol=spec.config.atol / RTOL_FACTOR ** k)
            yield s, s.config.rtol
        else:
            s = spec.with_config(step_size=spec.config.step_size / STEP_FACTOR ** k)
            yield s, s.config.step_size


def refinement_test(spec: RunSpec, levels: int = 3, **state) -> RefinementVerdict:
    """Run ``spec`` at ``levels`` refinements and classify the rise of H (see module doc)."""
    rows = []
    for s, param in refined_configs(spec, levels):
        traj = run_spec(s.with_config(progress=False, autodiff=False), **state)
        H = traj["H"]
        d = H[1:] - H[:-1]
        rows.append({"param": param, "positive_variation": positive_variation(traj),
                     "max_rise": max(0.0, float(d.max())) if d.numel() else 0.0, "n_steps": len(traj)})
    return classify_refinement(rows)
