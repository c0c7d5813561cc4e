"""Fixed-step reference integrators: explicit Euler (the planted-error baseline) and the
structure-preserving **implicit midpoint** rule (THEORY.md §7.6).

Every step is an "accepted step": the recorder sees each step start, exactly as with the
adaptive solvers, so verdicts and refinement treat both alike.

Implicit midpoint, order 2:

.. math::  y_{n+1} = y_n + h\\,F\\big(t_n + \\tfrac h2,\\ \\tfrac{y_n + y_{n+1}}2\\big),

solved by simplified Newton (the Jacobian ``I − (h/2) F'(ȳ)`` formed once per step by
reverse-mode autograd — dense, so small problems only, N ≤ ``NEWTON_MAX_DIM``) or by
fixed-point iteration above that size. For a *quadratic* H with ∇H linear,
``H(y₁) − H(y₀) = ⟨∇H(ȳ), y₁ − y₀⟩ = h⟨∇H(ȳ), F(ȳ)⟩ = −hΔ(ȳ) ≤ 0`` **exactly, at every h**
(heavy ball or gradient flow on a quadratic problem): a rise of H there is a real
violation or a bug, never step-size error. For non-quadratic H the rule is second order
and not guaranteed monotone; a discrete-gradient step would be, but needs the
skew/dissipative splitting F = S∇H per system, which the core does not expose yet.
"""
from __future__ import annotations

import math

import torch

from osd_theory.errors import IntegrationError

from ode.integrate import INTEGRATORS, SimulationConfig

NEWTON_MAX_DIM = 3000     # dense Jacobian above this would cost > 70 MB and N backward passes
NEWTON_TOL = 1e-13        # relative update size at which the implicit solve stops (float64)
MAX_ITERS = 50


def _flat(y: tuple) -> torch.Tensor:
    return torch.cat([b.reshape(-1) for b in y])


def _unflat(z: torch.Tensor, like: tuple) -> tuple:
    out, i = [], 0
    for b in like:
        out.append(z[i:i + b.numel()].reshape(b.shape))
        i += b.numel()
    return tuple(out)


class _FixedStep:
    adaptive = False
    order = 1

    def step(self, field, t: float, y: tuple, h: float) -> tuple:
        raise NotImplementedError

    def integrate(self, field, y: tuple, a: float, b: float, config: SimulationConfig) -> tuple:
        n = max(1, math.ceil((b - a) / config.step_size - 1e-9))
        h = (b - a) / n  # land exactly on b (a jump time or t_end)
        for i in range(n):
            t = a + i * h
            field.callback_accept_step(t, y, h)
            y = self.step(field, t, y, h)
            if not all(bool(torch.isfinite(x).all()) for x in y):
                raise IntegrationError("non-finite state", t_reached=t, cause=f"{type(self).__name__} step from t={t:.6g} with h={h:g}")
        return y


class ExplicitEuler(_FixedStep):
    """y_{n+1} = y_n + h F(t_n, y_n): order 1, no structure; H may rise by O(h²) per step."""

    order = 1

    def step(self, field, t, y, h):
        return tuple(a + h * f for a, f in zip(y, field(t, y)))


class RK4(_FixedStep):
    """Classical Runge–Kutta, order 4 (a fixed-step explicit comparison)."""

    order = 4

    def step(self, field, t, y, h):
        def add(y_, k, c):
            return tuple(a + c * b for a, b in zip(y_, k))
        k1 = field(t, y)
        k2 = field(t + h / 2, add(y, k1, h / 2))
        k3 = field(t + h / 2, add(y, k2, h / 2))
        k4 = field(t + h, add(y, k3, h))
        return tuple(a + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4) for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4))


class ImplicitMidpoint(_FixedStep):
    """Implicit midpoint (order 2, symplectic, H-monotone for quadratic H at every h)."""

    order = 2

    def step(self, field, t, y, h):
        tm = t + h / 2
        z0 = _flat(y)

        def F(z):  # F at the midpoint (y + y(z))/2, flattened
            return _flat(field(tm, _unflat(0.5 * (z0 + z), y)))

        z = z0 + h * F(z0)  # explicit Euler predictor
        J = None
        if z0.numel() <= NEWTON_MAX_DIM:
            # simplified Newton: R(z) = z − z0 − h F(z), R' = I − h ∂F/∂z = I − (h/2) F'(ȳ)
            Jf = torch.autograd.functional.jacobian(F, z)
            J = torch.eye(z.numel(), dtype=z.dtype) - h * Jf
        for _ in range(MAX_ITERS):
            R = z - z0 - h * F(z)
            dz = torch.linalg.solve(J, R) if J is not None else R
            z = z - dz
            if float(torch.linalg.vector_norm(dz)) <= NEWTON_TOL * (1.0 + float(torch.linalg.vector_norm(z))):
                return _unflat(z, y)
        raise IntegrationError("implicit midpoint did not converge", t_reached=t,
                               cause=f"{MAX_ITERS} {'Newton' if J is not None else 'fixed-point'} iterations, h={h:g}")


INTEGRATORS.add("euler", ExplicitEuler())
INTEGRATORS.add("rk4", RK4())
INTEGRATORS.add("implicit_midpoint", ImplicitMidpoint())
