"""Link the sympy definitions to the torch code: the proofs must be about *our* code.

For each system and side, the sympy objects of :func:`osd_theory.symbolic.proof.setup_case`
— ĝ, Ṡ, D, Ẇ, c_L, K, Δ (so H = c_L·L + K and the whole field) — are lambdified (abstract 𝒦 replaced by each concrete one of
:data:`~osd_theory.symbolic.calculus.CONCRETE_K`) and evaluated at random float64
points drawn within the system's condition; the same quantities are computed by
:mod:`osd_theory.kernels` and :mod:`osd_theory.hd` (``make_system(name, **hyper)``) and
compared. A mismatch means the proof and the code describe different systems.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch

from osd_theory import kernels
from osd_theory.hd import make_system
from osd_theory.symbolic.proof import SHAPE, SIDES, setup_case
from osd_theory.symbolic.systems import SYMBOLIC, SymbolicHD

POINTS = 3
# Same formulas in numpy (sympy's printer) and torch, float64, O(1) values: differences
# are a few ulps; 1e-10 relative (on max(1, |value|)) flags any real discrepancy.
RTOL = 1e-10


@dataclass
class LinkResult:
    system: str
    ok: bool
    max_rel_err: float
    detail: str


def _flat(case) -> list[sp.Symbol]:
    syms = list(case.W) + list(case.G) + ([] if case.P is None else list(case.P))
    for s in case.S:
        syms += list(s)
    return syms


def _draw(sysdef: SymbolicHD, case, rng, hyper) -> tuple[dict, dict]:
    """Random numeric W, G, P, S (as torch tensors) within the system's condition."""
    m, n = SHAPE
    t = {"G": torch.tensor(rng.normal(size=(m, n)))}
    if sysdef.full_rank:   # |λW| < 1: the smoothed-box conjugate 𝒦*(λW) is finite there
        W = rng.uniform(-0.9, 0.9, (m, n))
        # (a spectral 𝒦*: inside the spectral-norm ball ‖λW‖₂ < 1, which the box does not imply)
        t["W"] = torch.tensor(W * min(1.0, 0.9 / np.linalg.norm(W, 2)) / hyper["wd"])
    else:
        t["W"] = torch.tensor(rng.normal(size=(m, n)))
        t["P"] = torch.tensor(rng.normal(size=tuple(case.P.shape)))   # generic, not orthonormal
    shape = tuple(case.g_hat.shape)
    t["S"] = [torch.tensor(x) for x in sysdef.sample_state(rng, shape, hyper, t["W"])]
    return t


def _values(case, t) -> list[float]:
    vals = t["W"].flatten().tolist() + t["G"].flatten().tolist()
    if case.P is not None:
        vals += t["P"].flatten().tolist()
    for s in t["S"]:
        vals += s.flatten().tolist()
    return vals


def _torch_side(system, case, t, tt: float) -> dict[str, torch.Tensor]:
    """The same quantities from the torch code."""
    S, W, G = tuple(t["S"]), t["W"], t["G"]
    g_hat = G if case.P is None else kernels.project(t["P"], G, case.side)
    D = system.direction(tt, S, g_hat, W)
    Wdot = (D if case.P is None else kernels.back_project(t["P"], D, case.side)) - system.weight_decay * W
    out = {"g_hat": g_hat, "D": D, "Wdot": Wdot, "K": system.kinetic(tt, S, W),
           "c_L": torch.tensor(float(system.loss_weight), dtype=torch.float64),
           "Delta": system.dissipation(tt, S, g_hat, W)}
    for i, r in enumerate(system.state_rate(tt, S, g_hat)):
        out[f"Sdot{i}"] = r
    return out


def _compare(sym: dict, num: dict) -> tuple[float, str]:
    worst, where = 0.0, ""
    for key, ref in num.items():
        got = np.asarray(sym[key], dtype=np.float64).reshape(tuple(ref.shape))
        ref = ref.detach().numpy()
        err = float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref)))) if ref.size else 0.0
        if not np.isfinite(err):
            err = np.inf
        if err >= worst:
            worst, where = err, key
    return worst, where


def _one(sysdef: SymbolicHD, side, rank, kinetic_fn, rng) -> tuple[float, str]:
    case = setup_case(sysdef, side, rank)
    hyper = sysdef.sample_hyper(rng)
    tt = hyper.pop("t", 1.0)
    extra = {}
    if sysdef.uses_k:
        extra = {"kinetic_fn": kinetic_fn, "delta": float(rng.uniform(0.05, 1.0))}
    system = make_system(sysdef.name, **hyper, **extra)
    exprs = {"g_hat": case.g_hat, "D": case.D, "Wdot": case.Wdot, "K": case.K, "Delta": case.Delta,
             "c_L": sysdef.loss_weight(case.h),
             **{f"Sdot{i}": r for i, r in enumerate(case.Sdot)}}
    subs = {getattr(case.h, k): v for k, v in hyper.items()}
    subs[case.h.t] = tt
    for key, e in exprs.items():
        e = e.subs(subs)
        exprs[key] = sysdef.concrete(e, kinetic_fn, extra["delta"]) if sysdef.uses_k else e
    syms = _flat(case)
    modules = sysdef.lambdify_modules(kinetic_fn, extra["delta"]) if sysdef.uses_k else "numpy"
    f = sp.lambdify(syms, list(exprs.values()), modules=modules)
    worst, where = 0.0, ""
    for _ in range(POINTS):
        t = _draw(sysdef, case, rng, hyper)
        sym = dict(zip(exprs, f(*_values(case, t))))
        err, key = _compare(sym, _torch_side(system, case, t, tt))
        if err >= worst:
            worst, where = err, key
    return worst, where


def link_to_code(system: str | SymbolicHD, seed: int = 0) -> LinkResult:
    """Compare the sympy ĝ, Ṡ, D, Ẇ, K, Δ of one system with kernels + osd_theory.hd.

    ``system`` is a name in SYMBOLIC or a definition object; the torch twin is always
    ``make_system(definition.name, ...)``.
    """
    sysdef = SYMBOLIC.get(system) if isinstance(system, str) else system
    system_name = sysdef.name
    rng = np.random.default_rng(seed)
    sides = ((None, "full", None),) if sysdef.full_rank else SIDES
    fns = list(sysdef.kinetic_fns) if sysdef.uses_k else ["-"]
    worst, where, n = 0.0, "", 0
    for side, label, rank in sides:
        for fn in fns:
            err, key = _one(sysdef, side, rank, fn, rng)
            n += 1
            if err >= worst:
                worst, where = err, f"{key} ({label}, K={fn})"
    ok = worst <= RTOL
    detail = (f"{'agrees' if ok else 'DISAGREES'} at {n * POINTS} random points "
              f"(sides x K x {POINTS}; quantities g_hat, Sdot, D, Wdot, c_L, K, Delta): max rel err {worst:.1e} "
              f"at {where} (tol {RTOL:g})")
    return LinkResult(system_name, ok, worst, detail)
