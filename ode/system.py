"""The coupled right-hand side F(t, y) of the subspace HD system (THEORY.md §1.2).

State (a tuple, as torchdiffeq accepts; float64):

    y = (W, S_1, …, S_k, P, E)
        W   (m, n)      parameters
        S_i (r, n)|(m, r)  the optimizer state in the subspace (LEFT | RIGHT side)
        P   (m, r)|(n, r)  the projection basis (integrated only if the rule is smooth)
        E   ()          dissipated energy, Ė = Δ(S, ĝ)

.. math::
    ĝ = \\mathcal P^*(∇L(W)),\\quad \\dot W = \\mathcal P(D(t, S, ĝ, W)) - λW,\\quad
    \\dot S = ρ(τ(ĝ) - S),\\quad \\dot P = Γ(t, P, ∇L(W)),\\quad \\dot E = Δ .

E is bookkeeping, not dynamics: the exact flow conserves H + E (because Ḣ = −Δ), so the
drift of H + E between two accepted steps is the energy defect δ_n of THEORY.md §7.3 —
pure discretisation error, measured at the solver's own order.

Everything here is built from :mod:`osd_theory` (the system's ``state_rate``,
``direction``, ``dissipation``; the rule's ``rate``; the kernels); nothing is re-derived.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from osd_theory.errors import UserError
from osd_theory.hd.base import HDSystem
from osd_theory.kernels import back_project, project
from osd_theory.problems.base import Problem
from osd_theory.projections.base import ProjectionRule


@dataclass(frozen=True)
class Layout:
    """Where each block sits in the tuple state: W first, then k state tensors, P, E."""

    n_state: int

    def pack(self, W: Tensor, S: tuple[Tensor, ...], P: Tensor, E: Tensor) -> tuple[Tensor, ...]:
        return (W, *S, P, E)

    def unpack(self, y: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...], Tensor, Tensor]:
        k = self.n_state
        return y[0], tuple(y[1:1 + k]), y[1 + k], y[2 + k]


# State components that the exact flow keeps positive (Adam's v relaxes towards ĝ² ≥ 0 from v₀ > 0)
# and that decay towards 0 near a stationary point. An absolute tolerance lets RK stages
# overshoot them below 0, where √v is NaN: the steps are rejected until dt underflows.
# They get a purely relative tolerance instead (the solution stays > 0, so it is well defined).
POSITIVE_STATES = frozenset({"exp_avg_sq"})


class CoupledField(torch.nn.Module):
    """F(t, y) for torchdiffeq (an ``nn.Module`` so it can carry the accept-step callback).

    ``recorder`` (optional) receives ``(t0, y0, dt)`` of every *accepted* step: torchdiffeq
    0.2.5 calls ``func.callback_accept_step(t0, y0, dt)`` with the step's **start** point
    (rk_common.py, ``_adaptive_step``), only for its adaptive RK solvers.
    """

    def __init__(self, system: HDSystem, rule: ProjectionRule, problem: Problem):
        super().__init__()
        self.system, self.rule, self.problem = system, rule, problem
        self.layout = Layout(len(system.state_names))
        self.side = rule.side_
        self.recorder = None
        self.nfev = 0
        self.user_label = user_rule_label(rule)

    # -- the pieces, also used by the diagnostics -------------------------------------
    def parts(self, t: float, y: tuple[Tensor, ...]):
        """(W, S, P, G, ĝ) at state y."""
        W, S, P, _ = self.layout.unpack(y)
        G = self.problem.grad(W)
        return W, S, P, G, project(P, G, self.side)

    def velocity(self, t: float, W: Tensor, S: tuple[Tensor, ...], P: Tensor, g_hat: Tensor) -> Tensor:
        """Ẇ = 𝒫(D(t, S, ĝ, W)) − λW."""
        D = self.system.direction(t, S, g_hat, W)
        Wdot = back_project(P, D, self.side)
        lam = self.system.weight_decay
        return Wdot - lam * W if lam > 0 else Wdot

    def forward(self, t, y):
        t = float(t)
        self.nfev += 1
        W, S, P, G, g_hat = self.parts(t, y)
        Wdot = self.velocity(t, W, S, P, g_hat)
        Sdot = self.system.state_rate(t, S, g_hat)
        Pdot = self.rule_call("rate", t, P, G) if self.rule.smooth else torch.zeros_like(P)
        Edot = self.system.dissipation(t, S, g_hat, W).reshape(())   # Ė = Δ
        return self.layout.pack(Wdot, Sdot, Pdot, Edot)

    def rule_call(self, method: str, t: float, P: Tensor, G: Tensor) -> Tensor:
        """``rule.rate`` / ``rule.jump``; for a user rule, any failure is one UserError naming it.

        A built-in rule that raises is a bug and keeps its traceback. A user rule's exception,
        ``sys.exit``, a non-tensor, a wrong shape or non-finite values stop the run with the
        rule's name, the time and what went wrong (the CLI prints it as one line, exit 2).
        """
        fn = getattr(self.rule, method)
        if self.user_label is None:
            return fn(t, P, G)
        try:
            out = fn(t, P, G)
        except UserError:
            raise
        except SystemExit as exc:
            raise UserError(f"user projection rule {self.user_label!r} called sys.exit({exc.code!r}) in "
                            f"{method}() at t={t:.6g}") from None
        except Exception as exc:
            raise UserError(f"user projection rule {self.user_label!r} raised {type(exc).__name__}: {exc} "
                            f"in {method}() at t={t:.6g}") from None
        if not isinstance(out, Tensor) or tuple(out.shape) != tuple(P.shape):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(f"user projection rule {self.user_label!r}: {method}() returned {got}, expected a "
                            f"tensor of P's shape {tuple(P.shape)}")
        if not bool(torch.isfinite(out).all()):
            raise UserError(f"user projection rule {self.user_label!r}: {method}() returned non-finite values "
                            f"at t={t:.6g}")
        return out.to(P.dtype)

    def atol_blocks(self, atol: float) -> tuple[float, ...]:
        """Per-block absolute tolerance (W, S…, P, E): ``atol``, or 0 for POSITIVE_STATES."""
        S = tuple(0.0 if name in POSITIVE_STATES else atol for name in self.system.state_names)
        return (atol, *S, atol, atol)

    def callback_accept_step(self, t0, y0, dt):
        if self.recorder is not None:
            self.recorder(float(t0), y0, float(dt))


def user_rule_label(rule: ProjectionRule) -> str | None:
    """The user's name for a rule loaded from a file or given as a callable; None for a built-in."""
    from osd_theory.projections import PROJECTIONS
    if getattr(rule, "osd_user_label", None):               # set by ode.spec.build_run: the file.py:name spec
        return str(rule.osd_user_label)
    if getattr(rule, "name", None) == "user":
        return str(getattr(rule, "label", "user"))
    if rule.name in PROJECTIONS and type(rule) is PROJECTIONS.get(rule.name):
        return None
    return f"{type(rule).__module__}.{type(rule).__name__}" if type(rule).__module__.startswith("osd_user_rule_") else None
