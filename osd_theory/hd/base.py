"""The Hamiltonian Descent (HD) system interface, in subspace form (THEORY.md §1.2).

An HD system is a vector field on a small state ``S`` living in the subspace, driven
by the projected gradient ``ĝ = project(P, ∇L(W))``:

.. math::
    \\dot S_i = ρ_i\\,(τ_i(ĝ) - S_i),\\qquad
    \\dot W = \\mathcal P\\big(D(S, ĝ)\\big) - λ W,\\qquad
    H = c_L\\,L(W) + K(S),\\qquad \\dot H = -Δ(S, ĝ) \\le 0

Every optimizer of THEORY.md §3 has state equations of this *relaxation* form
(each component relaxes at rate ρ_i towards a target τ_i(ĝ)): heavy ball and Adam's
m → ĝ, Adam's v → ĝ², Lion's m → −ĝ. This is what lets one definition serve both uses:

* the ODE integrates ``state_rate`` = ρ(τ − S) and ``velocity``;
* the discrete optimizer takes the Euler step ``S ← S + h ρ (τ − S)`` =
  ``lerp(S, τ, hρ)`` (:meth:`HDSystem.euler_state_`) with h = lr, then moves W
  along the same ``direction``. With ρ = (1−β)/lr this *is* the EMA ``βS + (1−β)τ``.

Subclasses are frozen dataclasses of hyperparameters and define: ``state_names``,
``init_state``, ``relaxation``, ``direction``, ``kinetic``, ``dissipation``,
``condition``. ``t`` is passed everywhere so that non-autonomous systems (Adam with
bias correction) fit; autonomous ones ignore it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar, Sequence

import torch
from torch import Tensor

from osd_theory.errors import UserError

State = tuple[Tensor, ...]


@dataclass(frozen=True)
class Condition:
    """Whether the stated condition for H to be a Lyapunov function holds.

    ``holds`` is the verdict; ``statement`` says which inequality, with numbers,
    e.g. ``"b <= 4a: 0.5 <= 4.0"``. A violated condition is reported, never hidden.
    """

    holds: bool
    statement: str

    def __str__(self) -> str:
        return f"{'holds' if self.holds else 'VIOLATED'}: {self.statement}"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(message)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class HDSystem:
    """Base class: hyperparameters as frozen dataclass fields (see module docstring)."""

    name: ClassVar[str] = "base"
    state_names: ClassVar[tuple[str, ...]] = ()
    autonomous: ClassVar[bool] = True
    # The discrete step moves W with the state *after* its Euler update (semi-implicit,
    # like symplectic Euler) unless the method's published form uses the old state
    # (Lion's look-ahead uses m_{t-1}).
    direction_uses_new_state: ClassVar[bool] = True

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            # fields declared float are checked whatever was passed ("1.0", None, NaN)
            if f.type in (float, "float") or (isinstance(v, (int, float)) and not isinstance(v, bool)):
                _finite(f.name, v)

    # -- to be defined by each system ------------------------------------------------
    def init_state(self, g_hat: Tensor) -> State:
        """Initial state for a projected gradient of ``g_hat``'s shape (zeros unless stated)."""
        return tuple(torch.zeros_like(g_hat) for _ in self.state_names)

    def relaxation(self, t: float, S: State, g_hat: Tensor) -> tuple[tuple[Tensor, float], ...]:
        """``((τ_i(ĝ), ρ_i), ...)``: each state component relaxes at rate ρ_i towards τ_i."""
        raise NotImplementedError

    def direction(self, t: float, S: State, g_hat: Tensor, W: Tensor | None = None) -> Tensor:
        """Subspace velocity ``D``; ``Ẇ = back_project(P, D) − weight_decay · W``."""
        raise NotImplementedError

    def kinetic(self, t: float, S: State, W: Tensor | None = None) -> Tensor:
        """K(S) (0-d tensor), so that ``H = loss_weight · L(W) + K(S)``."""
        raise NotImplementedError

    def dissipation(self, t: float, S: State, g_hat: Tensor, W: Tensor | None = None) -> Tensor:
        """Δ ≥ 0 in closed form, with ``dH/dt = −Δ`` (0-d tensor)."""
        raise NotImplementedError

    def condition(self) -> Condition:
        """The parameter condition under which H is a Lyapunov function."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------
    @property
    def loss_weight(self) -> float:
        """c_L in ``H = c_L L + K``; 1 except for Lion-𝒦 (THEORY.md §3.3)."""
        return 1.0

    @property
    def weight_decay(self) -> float:
        return float(getattr(self, "wd", 0.0))

    def state_rate(self, t: float, S: State, g_hat: Tensor) -> State:
        """Ṡ_i = ρ_i (τ_i(ĝ) − S_i)."""
        return tuple(rate * (target - s) for s, (target, rate) in zip(S, self.relaxation(t, S, g_hat)))

    def euler_state_(self, S: Sequence[Tensor], g_hat: Tensor, h: float, t: float = 0.0) -> None:
        """In place: S_i ← S_i + h ρ_i (τ_i − S_i) = lerp(S_i, τ_i, hρ_i) — one Euler step."""
        for s, (target, rate) in zip(S, self.relaxation(t, tuple(S), g_hat)):
            s.lerp_(target.to(s.dtype), h * rate)

    def hamiltonian(self, t: float, loss: Tensor, S: State, W: Tensor | None = None) -> Tensor:
        """H = c_L · L(W) + K(S)  (H does not depend on P)."""
        return self.loss_weight * loss + self.kinetic(t, S, W)

    def stationarity(self, W: Tensor, G: Tensor) -> Tensor:
        """‖∇L‖, or the box-KKT residual ‖W − Π_{[−1/λ,1/λ]}(W − G)‖ with weight decay λ."""
        lam = self.weight_decay
        if lam > 0:
            return torch.linalg.vector_norm(W - (W - G).clamp(-1.0 / lam, 1.0 / lam))
        return torch.linalg.vector_norm(G)

    @property
    def stationarity_name(self) -> str:
        return "box-KKT residual" if self.weight_decay > 0 else "||grad L||"

    def describe(self) -> str:
        params = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({params})"
