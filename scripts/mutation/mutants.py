"""The planted bugs of the mutation check: each one a runtime patch of one attribute.

A :class:`Mutant` names a module, an attribute path in it (``Class.method`` or ``CONSTANT``) and a
``transform(original) -> replacement``. It is applied by :mod:`sitecustomize` in a fresh interpreter
when the module is first imported (so ``from module import name`` elsewhere binds the mutant), and
never written to a file: the repository stays clean. Kinds, as issue 13 lists them: signs in
fields, conditions, Δ scalings, kinetic energies, tolerances, the symbolic reduction; plus a
projection-flow rate, an adjointness break and a discrete time step.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str
    module: str
    attr: str                      # "Class.method" or "NAME"
    transform: Callable[[Any], Any]
    description: str


def _scale_method(factor):
    def transform(fn):
        def mutated(self, *a, **k):
            return factor * fn(self, *a, **k)
        return mutated
    return transform


def _negate_first_target(fn):
    """relaxation(): ((τ, ρ), ...) -> ((−τ, ρ), ...): the state relaxes towards −ĝ."""
    def mutated(self, t, S, g_hat):
        (target, rate), *rest = fn(self, t, S, g_hat)
        return ((-target, rate), *rest)
    return mutated


def _condition(text, holds):
    def transform(fn):
        from osd_theory.hd.base import Condition

        def mutated(self):
            return Condition(holds(self), text)
        return mutated
    return transform


def _const(value):
    return lambda original: value


def _wrap_kwargs(**override):
    def transform(fn):
        def mutated(*a, **k):
            return fn(*a, **{**k, **override})
        return mutated
    return transform


def _always(kind):
    def transform(fn):
        def mutated(levels, **k):
            out = fn(levels, **k)
            from dataclasses import replace
            return replace(out, kind=kind)
        return mutated
    return transform


def _zero_reduction(fn):
    import sympy as sp
    return lambda expr: sp.Integer(0)


def _scaled_function(factor):
    def transform(fn):
        def mutated(*a, **k):
            return factor * fn(*a, **k)
        return mutated
    return transform


def _sgd_time_step_without_momentum(fn):
    return lambda lr, momentum: lr


def _explicit_sgd(fn):
    """torch SGD with the W step from the *old* buffer (explicit Euler of heavy ball), not the new one."""
    def mutated(S, g_hat, **kw):
        old = S[0].clone()
        fn(S, g_hat, **kw)
        return old.neg()
    return mutated


def _explicit_adam(fn):
    """Adam with the direction from the *old* moments (explicit Euler; bias correction dropped), then the
    moment update in place."""
    def mutated(S, g_hat, **kw):
        m, v = S[0].clone(), S[1].clone()
        fn(S, g_hat, **kw)
        return -m / (v.sqrt() + kw["eps"])
    return mutated


def _qr_without_sign_fix(fn):
    import torch
    return lambda P: torch.linalg.qr(P)[0]


def _refresh_one_step_early(fn):
    """GaLore's refresh at step % T == T − 1 instead of 0 (the first refresh one step early)."""
    def mutated(state, rule, plan):
        if state["last_refresh_step"] < 0:
            return "init"
        return "jump" if rule.jumps and (int(state["step"]) + 1) % plan.gap == 0 else None
    return mutated


def _periodic_times_skip_first(fn):
    def mutated(t0, t1, tau):
        return fn(t0, t1, tau)[1:]
    return mutated


def _noise_scaled(factor):
    def transform(fn):
        def mutated(self, W, gen):
            return factor * fn(self, W, gen)
        return mutated
    return transform


MUTANTS: list[Mutant] = [
    Mutant("adam_direction_sign", "sign in a field", "osd_theory.hd.adam", "Adam.direction", _scale_method(-1.0),
           "Adam's W-velocity +m/(sqrt v + e) instead of -m/(sqrt v + e)"),
    Mutant("heavy_ball_momentum_sign", "sign in a field", "osd_theory.hd.heavy_ball", "HeavyBall.relaxation",
           _negate_first_target, "heavy ball's momentum relaxes towards -G_hat"),
    Mutant("lion_k_direction_sign", "sign in a field", "osd_theory.hd.lion_k", "LionK.direction", _scale_method(-1.0),
           "Lion-K's W-velocity with the wrong sign"),
    Mutant("adam_condition_4.5a", "condition", "osd_theory.hd.adam", "Adam.condition",
           _condition("b <= 4.5a (planted)", lambda s: s.b <= 4.5 * s.a and s.e > 0 and s.v0 > 0),
           "Adam's condition() says b <= 4.5a"),
    Mutant("lion_wd_condition_2", "condition", "osd_theory.hd.lion_k", "LionKWeightDecay.condition",
           _condition("eps*gamma <= 2 (planted)", lambda s: s.eps * s.gamma <= 2),
           "Lion-K with weight decay: condition() says eps*gamma <= 2"),
    Mutant("adam_delta_half", "Delta scaling", "osd_theory.hd.adam", "Adam.dissipation", _scale_method(0.5),
           "Adam's closed-form Delta halved"),
    Mutant("heavy_ball_delta_1.1", "Delta scaling", "osd_theory.hd.heavy_ball", "HeavyBall.dissipation",
           _scale_method(1.1), "heavy ball's Delta = 1.1 ||M||^2"),
    Mutant("heavy_ball_kinetic_double", "kinetic energy", "osd_theory.hd.heavy_ball", "HeavyBall.kinetic",
           _scale_method(2.0), "heavy ball's K = ||M||^2/a instead of ||M||^2/2a"),
    Mutant("signum_kinetic_half", "kinetic energy", "osd_theory.hd.signum", "Signum.kinetic", _scale_method(0.5),
           "Signum's K = K_delta(M)/2a instead of K_delta(M)/a"),
    Mutant("lyapunov_tolerance_1e6", "tolerance", "osd_theory.verdicts", "SOLVER_FACTOR", _const(1e6),
           "the Lyapunov verdict allows 1e6 (atol + rtol |H|) per step instead of 10"),
    Mutant("pointwise_tolerance_1e3", "tolerance", "osd_theory.verdicts", "POINTWISE_TOL", _const(1e3),
           "the pointwise check allows dH/dt up to 1e3 (1 + |H|)"),
    Mutant("stationarity_tolerance_1e2", "tolerance", "osd_theory.verdicts", "stationarity_verdict",
           _wrap_kwargs(atol=1e2), "the stationarity verdict accepts a residual up to 100"),
    Mutant("refinement_always_solver_error", "tolerance", "osd_theory.verdicts", "classify_refinement",
           _always("solver error"), "the refinement test calls every rise solver error"),
    Mutant("symbolic_reduction_zero", "symbolic reduction", "osd_theory.symbolic.systems", "reduce_rational",
           _zero_reduction, "the sympy reduction of dH/dt + Delta returns 0 whatever it is given"),
    Mutant("online_pca_rate_half", "projection flow", "osd_theory.kernels", "online_pca_grad_from_parts", _scaled_function(0.5),
           "the online-PCA gradient halved (P moves at alpha/2)"),
    Mutant("project_not_adjoint", "adjointness", "osd_theory.kernels", "project", _scaled_function(2.0),
           "project() returns 2 P^T G: no longer the adjoint of back_project()"),
    Mutant("sgd_time_step_no_momentum", "discrete time step", "osd_theory.discrete_steps", "sgd_time_step",
           _sgd_time_step_without_momentum, "torch SGD's lr taken as the Euler step h (missing 1/(1-mu))"),
    # issue 25's survivors, and more of the same kinds
    Mutant("adam_bc_condition_8a", "condition", "osd_theory.hd.adam", "AdamBiasCorrected.condition",
           _condition("b <= 8a (planted)", lambda s: s.b <= 8 * s.a and s.e > 0 and s.v0 > 0),
           "the bias-corrected Adam's condition() says b <= 8a"),
    Mutant("retract_qr_no_sign_fix", "retraction", "osd_theory.projections.base", "retract_qr", _qr_without_sign_fix,
           "the QR retraction without its sign fix (diag(R) may be negative: basis columns flip)"),
    Mutant("explicit_euler_sgd", "discrete time step", "osd_theory.discrete_steps", "sgd_step", _explicit_sgd,
           "SGD-momentum's W step uses the old buffer (explicit Euler), not the new one (semi-implicit)"),
    Mutant("explicit_euler_adam", "discrete time step", "osd_theory.discrete_steps", "adam_step", _explicit_adam,
           "Adam's W step uses the old moments (explicit Euler, no bias correction), not the new ones"),
    Mutant("galore_refresh_one_step_early", "refresh period", "discrete.subspace", "refresh_event",
           _refresh_one_step_early, "GaLore refreshes at step % T == T-1 (an off-by-one in the refresh period)"),
    Mutant("periodic_times_skip_first", "refresh period", "osd_theory.projections.base", "periodic_times",
           _periodic_times_skip_first, "the simulator's periodic jumps skip the first one (tau, then 2 tau ...)"),
    Mutant("c7_noise_variance_x4", "stochastic setting", "osd_theory.claims.stochastic", "Isotropic.noise",
           _noise_scaled(2.0), "C7's isotropic noise has 4x the variance it states (2 sigma)"),
    Mutant("c7_shrink_threshold_relaxed", "tolerance", "osd_theory.claims.stochastic", "SHRINK_P_MIN", _const(-10.0),
           "C7's 'floor shrinks with lr' test passes any p > -10"),
    Mutant("c7_stall_threshold_relaxed", "tolerance", "osd_theory.claims.stochastic", "STALL_P_MAX", _const(10.0),
           "C7's 'floor does not shrink' test passes any p < 10"),
    Mutant("c7_floor_tolerance_relaxed", "tolerance", "osd_theory.claims.stochastic", "FLOOR_RTOL", _const(10.0),
           "C7's AdamW floor may be 10x off its prediction lr*sigma*d/4"),
    Mutant("c5_step_tolerance_relaxed", "tolerance", "osd_theory.claims.discrete_ode", "STEP_RTOL", _const(1.0),
           "C5 accepts any difference between the optimizer and the semi-implicit Euler loop"),
    Mutant("stall_alpha_star_half", "linearisation", "ode.stall", "critical_alpha", _scaled_function(0.5),
           "C6's predicted alpha* halved"),
]

BY_NAME = {m.name: m for m in MUTANTS}


def _owner(module, attr: str):
    *path, leaf = attr.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    return owner, leaf


def apply(mutant: Mutant, module) -> Callable[[], None]:
    """Patch ``module`` in place; returns a function that restores the original."""
    owner, leaf = _owner(module, mutant.attr)
    original = getattr(owner, leaf)
    setattr(owner, leaf, mutant.transform(original))
    return lambda: setattr(owner, leaf, original)


def check_targets() -> list[str]:
    """Import every target, apply and restore each mutant in this process; returns the problems found."""
    problems = []
    for m in MUTANTS:
        try:
            module = importlib.import_module(m.module)
            owner, leaf = _owner(module, m.attr)
            before = getattr(owner, leaf)
            restore = apply(m, module)
            changed = getattr(owner, leaf) is not before
            restore()
            if not changed or getattr(owner, leaf) is not before:
                problems.append(f"{m.name}: patch did not change {m.module}.{m.attr} or was not restored")
        except Exception as exc:  # a renamed target must be reported, not crash the check
            problems.append(f"{m.name}: {m.module}.{m.attr}: {type(exc).__name__}: {exc}")
    return problems
