"""Symbolic proof of the Lyapunov identity dH/dt = −Δ, for every Ṗ (THEORY.md §1.2, §3).

Setting (generic, nothing orthonormal, nothing about L):

* W (m, n) = (2, 3) of symbols ``w_ij``; L(W) an *undefined* sympy function of them,
  with ∂L/∂w_ij replaced by free symbols ``g_ij`` (G = ∇L(W));
* P generic on both sides — LEFT (2, 1), RIGHT (3, 2) — with entries ``p_ij`` and an
  unspecified Ṗ of free symbols ``pdot_ij``; ĝ = project(P, G);
* the state S of ĝ's shape (free symbols), hyperparameters positive symbols, 𝒦 abstract.

With H = c_L·L(W) + K(S, t, W), the chain rule along the field reads

.. math::
    \\frac{dH}{dt} = \\sum_{ij} \\frac{∂H}{∂w_{ij}}\\dot w_{ij} + \\sum \\frac{∂H}{∂S}\\dot S
      + \\sum_{ij}\\frac{∂H}{∂p_{ij}}\\dot p_{ij} + \\frac{∂H}{∂t},\\qquad
    \\dot W = 𝒫(D) − λW,

and the proof checks (1) ``∂H/∂p_ij ≡ 0``, (2) ``∂(dH/dt)/∂pdot_ij ≡ 0``, (3) the
residual ``dH/dt + Δ`` reduces to 0 (after the system's stated ``facts``). If sympy
cannot reduce (3) to 0, the residual is evaluated with a concrete 𝒦 at random float64
points: the result then says ``method="numeric"`` — never a silent pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from osd_theory.symbolic.calculus import back_project, project, sym_matrix
from osd_theory.symbolic.systems import SYMBOLIC, SymbolicHD

SHAPE = (2, 3)
SIDES = ((0, "left", 1), (1, "right", 2))   # (side, label, rank): P is (2, 1) or (3, 2)
NUMERIC_POINTS = 20
# float64 rounding of O(1)-sized terms over a few dozen operations: 1e-9 leaves 10⁵ eps of room
NUMERIC_RTOL = 1e-9


@dataclass
class ProofResult:
    """Outcome of :func:`prove` for one system (both sides, or full rank)."""

    system: str
    method: str                  # "symbolic" or "numeric"
    identity_holds: bool         # dH/dt + Δ ≡ 0
    independent_of_Pdot: bool    # ∂H/∂P ≡ 0 and ∂(dH/dt)/∂Ṗ ≡ 0
    detail: str
    matches_code: bool | None = None   # sympy H, field, Δ agree with osd_theory.hd (link.py); None = not run
    seconds: float = 0.0
    cases: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.identity_holds and self.independent_of_Pdot and self.matches_code is not False

    def as_row(self) -> dict:
        """A plain dict for tables / JSON (the claims table)."""
        return {"system": self.system, "method": self.method, "identity_holds": self.identity_holds,
                "independent_of_Pdot": self.independent_of_Pdot, "matches_code": self.matches_code,
                "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass
class Case:
    """The symbolic objects of one (system, side) case."""

    W: sp.Matrix            # (2, 3) symbols w_ij
    G: sp.Matrix            # (2, 3) symbols g_ij = ∂L/∂w_ij
    L: sp.Expr              # L(w_11, …, w_23), undefined
    P: sp.Matrix | None     # (dim, r) symbols p_ij; None for full-rank systems
    Pdot: sp.Matrix | None  # (dim, r) symbols pdot_ij: an unspecified Γ
    g_hat: sp.Matrix        # project(P, G)
    S: tuple                # state matrices of g_hat's shape
    h: object               # hyperparameter symbols (and t)
    K: sp.Expr              # kinetic part of H
    H: sp.Expr              # c_L·L + K
    D: sp.Matrix            # subspace direction
    Wdot: sp.Matrix         # back_project(P, D) − λW
    Sdot: tuple             # state rates
    Delta: sp.Expr          # closed-form Δ (as the torch code computes it)
    side: int | None


def setup_case(sysdef: SymbolicHD, side: int | None, rank: int | None) -> Case:
    """W, G, P, Ṗ, ĝ, S, H, the field and the closed-form Δ — everything but dH/dt."""
    m, n = SHAPE
    W, G = sym_matrix("w", m, n), sym_matrix("g", m, n)
    L = sp.Function("L")(*W)
    h = sysdef.symbols()
    if sysdef.full_rank:
        P = Pdot = None
        g_hat = G
    else:
        dim = m if side == 0 else n
        P, Pdot = sym_matrix("p", dim, rank), sym_matrix("pdot", dim, rank)
        g_hat = project(P, G, side)
    S = sysdef.state(*g_hat.shape)
    K = sysdef.kinetic(h, S, W)
    D = sysdef.direction(h, S, g_hat, W)
    Wdot = (D if P is None else back_project(P, D, side)) - sysdef.weight_decay(h) * W
    return Case(W=W, G=G, L=L, P=P, Pdot=Pdot, g_hat=g_hat, S=S, h=h, K=K, H=sysdef.loss_weight(h) * L + K,
                D=D, Wdot=Wdot, Sdot=sysdef.rate(h, S, g_hat), Delta=sysdef.dissipation(h, S, g_hat, W), side=side)


def time_derivative(case: Case) -> sp.Expr:
    """dH/dt by the chain rule over W, S, P and t, with ∂L/∂W replaced by G (module docstring)."""
    H = case.H
    dH = sum((sp.diff(H, w) * wd for w, wd in zip(case.W, case.Wdot)), sp.Integer(0))
    for s_mat, sdot in zip(case.S, case.Sdot):
        dH += sum((sp.diff(H, s) * sd for s, sd in zip(s_mat, sdot)), sp.Integer(0))
    if case.P is not None:
        dH += sum((sp.diff(H, p) * pd for p, pd in zip(case.P, case.Pdot)), sp.Integer(0))
    dH += sp.diff(H, case.h.t)
    return dH.subs({sp.Derivative(case.L, w): g for w, g in zip(case.W, case.G)})   # ∂L/∂W = G


def _pdot_independence(case: Case, dHdt: sp.Expr) -> tuple[bool, str]:
    if case.P is None:
        return True, "vacuous: full-rank system (P = I, no Pdot)"
    dHdP = [sp.diff(case.H, p) for p in case.P]
    dHdPdot = [sp.simplify(sp.diff(dHdt, pd)) for pd in case.Pdot]
    ok = all(x == 0 for x in dHdP) and all(x == 0 for x in dHdPdot)
    return ok, f"dH/dP = 0 ({len(dHdP)} entries), d(dH/dt)/dPdot = 0 ({len(dHdPdot)} entries)" if ok else \
        f"H or dH/dt depends on P/Pdot: dH/dP={dHdP}, d(dH/dt)/dPdot={dHdPdot}"


def _numeric_residual(sysdef: SymbolicHD, case: Case, residual: sp.Expr, seed: int = 0) -> float:
    """max |residual| / max(1, |Δ|) over random float64 points, 𝒦 = tanh(·/0.5).

    ``residual`` is the raw dH/dt + Δ (no ``finalize``), so this check does not rely on
    the symbolic reduction it replaces.
    """
    rng = np.random.default_rng(seed)
    res, Delta = residual, case.Delta
    modules = "numpy"
    if sysdef.uses_k:
        fn = sysdef.numeric_fn
        res, Delta = sysdef.concrete(res, fn, 0.5), sysdef.concrete(Delta, fn, 0.5)
        modules = sysdef.lambdify_modules(fn, 0.5)
    syms = sorted(res.free_symbols | Delta.free_symbols, key=str)
    f = sp.lambdify(syms, [res, Delta], modules=modules)
    worst = 0.0
    for _ in range(NUMERIC_POINTS):
        vals = []
        for s in syms:
            # positive symbols (rates, v, t) in (0.1, 0.9); w in (−1, 1) keeps |λw| < 1, where
            # the tanh conjugate is finite; everything else standard normal
            v = rng.uniform(0.1, 0.9) if s.is_positive else rng.uniform(-1, 1) if s.name.startswith("w_") \
                else rng.normal()
            vals.append(v)
        r, d = f(*vals)
        err = abs(float(r)) / max(1.0, abs(float(d)))
        worst = max(worst, err if np.isfinite(err) else np.inf)    # NaN (outside dom 𝒦*) fails, never passes
    return worst


def _prove_case(sysdef: SymbolicHD, side: int | None, rank: int | None, force_numeric: bool) -> dict:
    case = setup_case(sysdef, side, rank)
    dHdt = time_derivative(case)
    indep, indep_detail = _pdot_independence(case, dHdt)
    raw = dHdt + case.Delta
    residual = sysdef.finalize(raw, case.h, case.S, case.W)
    label = "full rank" if side is None else f"{'left' if side == 0 else 'right'} P {tuple(case.P.shape)}"
    if residual == 0 and not force_numeric:
        return {"case": label, "method": "symbolic", "holds": True, "independent": indep,
                "detail": f"{label}: dH/dt + Delta simplifies to 0; {indep_detail}"}
    err = _numeric_residual(sysdef, case, raw)
    why = "forced" if force_numeric else f"sympy left a residual with {sp.count_ops(residual)} ops"
    holds = err <= NUMERIC_RTOL
    return {"case": label, "method": "numeric", "holds": holds, "independent": indep,
            "detail": f"{label}: {why}; numeric check at {NUMERIC_POINTS} float64 points (K = tanh): "
                      f"max |dH/dt + Delta| / max(1, |Delta|) = {err:.2e} (tol {NUMERIC_RTOL:g}); {indep_detail}"}


def prove(system: str | SymbolicHD, *, force_numeric: bool = False, link: bool = True) -> ProofResult:
    """Prove dH/dt = −Δ for one system (a name in SYMBOLIC, or a definition object).

    ``force_numeric`` skips the symbolic reduction (to exercise the fallback); ``link``
    also checks the sympy H, field and Δ against :mod:`osd_theory.hd` (link.py).
    """
    t0 = time.perf_counter()
    sysdef = SYMBOLIC.get(system) if isinstance(system, str) else system
    system_name = sysdef.name
    sides = ((None, "full", None),) if sysdef.full_rank else SIDES
    cases = [_prove_case(sysdef, side, rank, force_numeric) for side, _, rank in sides]
    method = "numeric" if any(c["method"] == "numeric" for c in cases) else "symbolic"
    detail = f"W {SHAPE[0]}x{SHAPE[1]}, generic P, unspecified L and Pdot; facts used: {sysdef.facts}. " + \
        " | ".join(c["detail"] for c in cases)
    result = ProofResult(system_name, method, all(c["holds"] for c in cases),
                         all(c["independent"] for c in cases), detail, cases=cases)
    if link:
        from osd_theory.symbolic.link import link_to_code
        lk = link_to_code(sysdef)
        result.matches_code = lk.ok
        result.detail += f" | link to osd_theory.hd: {lk.detail}"
    result.seconds = time.perf_counter() - t0
    return result


def prove_all(*, link: bool = True) -> list[ProofResult]:
    """:func:`prove` for every system of :data:`SYMBOLIC` (= every HD system)."""
    return [prove(name, link=link) for name in SYMBOLIC.names()]
