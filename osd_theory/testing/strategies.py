"""Hypothesis strategies for the math core (``from osd_theory.testing import dims, hd_cases, ...``).

The project's own property tests use these, and so can yours. All builders are ``@st.composite``
and return float64 torch tensors or core objects; randomness inside a case comes from a drawn seed
fed to a ``torch.Generator`` (hypothesis shrinks the seed and the sizes). Sizes are small by default
(``MAX_DIM = 12``; :func:`problems` and :func:`rule_cases` default to ≤ 5) so that a failing case
shrinks in seconds.

| builder | gives |
|---|---|
| :func:`dims` | (m, n) with 1 ≤ m, n ≤ 12 |
| :func:`spectrum_matrix` | G = U diag(s) Vᵀ (m, n) of a drawn rank and singular values |
| :func:`bases` | a generic, **non-orthonormal** P (dim, r) |
| :func:`hyperparameters` | a system's hyperparameters, within its condition or not |
| :func:`states` | an admissible state (Adam: v > 0) of a given shape |
| :func:`hd_cases` | a whole (system, problem, side, W, P, S, t) case |
| :func:`systems` | an HD system with drawn hyperparameters (its condition holding, or not) |
| :func:`problems` | a test problem of a drawn small shape and seed |
| :func:`rule_cases` | your own Γ(t, P, G) in a drawn (system, problem, rank, side) run: see :func:`osd_theory.testing.check_rule` |
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from osd_theory.convex import CONVEX, SpectralK, make_convex
from osd_theory.hd import HD_SYSTEMS, HDSystem, make_system
from osd_theory.kernels import LEFT, RIGHT, basis_dim, random_basis
from osd_theory.problems import PROBLEMS, Problem, make_problem

MAX_DIM = 12
DT = torch.float64
SYSTEMS = HD_SYSTEMS.names()
KINETIC_FNS = CONVEX.names()
SPECTRAL_FNS = [n for n in KINETIC_FNS if isinstance(make_convex(n), SpectralK)]
#: full-rank systems (state of W's shape, P = I): Lion-𝒦 with weight decay, elementwise or spectral
FULL_RANK = ("lion_k_wd", "muon_wd")


def _gen(draw) -> torch.Generator:
    return torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))


def floats_in(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Finite floats in [lo, hi]."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def dims(draw, max_dim: int = MAX_DIM, min_dim: int = 1) -> tuple[int, int]:
    return draw(st.integers(min_dim, max_dim)), draw(st.integers(min_dim, max_dim))


@st.composite
def spectrum_matrix(draw, m: int, n: int, rank: int | None = None,
                    smin: float = 1e-2, smax: float = 10.0) -> torch.Tensor:
    """G = U diag(s) Vᵀ with Haar U (m, r), V (n, r), s ∈ [smin, smax] sorted descending."""
    r = rank if rank is not None else draw(st.integers(1, min(m, n)))
    s = sorted(draw(st.lists(floats_in(smin, smax), min_size=r, max_size=r)), reverse=True)
    g = _gen(draw)
    U = random_basis(m, r, generator=g, dtype=DT)
    V = random_basis(n, r, generator=g, dtype=DT)
    return (U * torch.tensor(s, dtype=DT)) @ V.mT


@st.composite
def bases(draw, dim: int, rank: int) -> torch.Tensor:
    """Generic P (dim, r): Gaussian with a drawn scale — neither orthonormal nor normalised."""
    scale = draw(floats_in(0.3, 3.0))
    return scale * torch.randn(dim, rank, generator=_gen(draw), dtype=DT)


# -- hyperparameters per system: (condition holds) -> strategy of kwargs ------------------
def _adam(holds: bool):
    @st.composite
    def build(draw):
        a = draw(floats_in(0.05, 10.0))
        q = draw(floats_in(0.01, 1.0)) if holds else draw(floats_in(1.05, 8.0))     # q = b/4a
        return {"a": a, "b": 4 * a * q, "e": draw(floats_in(1e-3, 1.0)), "v0": draw(floats_in(1e-3, 1.0))}
    return build()


def _kinetic(names=None):
    return st.fixed_dictionaries({"kinetic_fn": st.sampled_from(names or KINETIC_FNS), "delta": floats_in(0.05, 1.0)})


def _lion_k_wd(holds: bool, names=None):
    @st.composite
    def build(draw):
        gamma = draw(st.one_of(st.just(0.0), floats_in(0.05, 10.0)))
        # εγ ≤ 1 when the condition holds; > 1 otherwise (needs γ > 0)
        if holds:
            eps = draw(floats_in(0.01, 1.0)) / max(gamma, 1.0)
        else:
            gamma = max(gamma, 0.5)
            eps = draw(floats_in(1.05, 3.0)) / gamma
        return {"alpha": draw(floats_in(0.05, 10.0)), "gamma": gamma, "eps": eps, "wd": draw(floats_in(0.05, 2.0)),
                **draw(_kinetic(names))}
    return build()


_HYPER = {
    "gd": lambda holds: st.just({}),
    "heavy_ball": lambda holds: st.fixed_dictionaries({"a": floats_in(0.05, 10.0)}),
    "adam": _adam,
    "adam_bc": _adam,
    "lion_k": lambda holds: st.builds(lambda a, b, k: {"a": a, "b": b, **k}, floats_in(0.0, 10.0),
                                      floats_in(0.01, 0.99) if holds else floats_in(1.01, 3.0), _kinetic()),
    "lion_k_wd": _lion_k_wd,
    "signum": lambda holds: st.builds(lambda a, k: {"a": a, **k}, floats_in(0.05, 10.0), _kinetic()),
    "muon": lambda holds: st.builds(lambda a, b, k: {"a": a, "b": b, **k}, floats_in(0.0, 10.0),
                                    floats_in(0.01, 0.99) if holds else floats_in(1.01, 3.0), _kinetic(SPECTRAL_FNS)),
    "muon_wd": lambda holds: _lion_k_wd(holds, SPECTRAL_FNS),
}


#: systems whose Lyapunov condition can be violated by hyperparameters alone
VIOLABLE = ("adam", "adam_bc", "lion_k", "lion_k_wd", "muon", "muon_wd")


def hyperparameters(system: str, condition_holds: bool = True) -> st.SearchStrategy[dict]:
    """Keyword hyperparameters of ``system``; with ``condition_holds=False`` they violate
    its condition (b > 4a, b ∉ (0, 1), εγ > 1) — only for the systems in :data:`VIOLABLE`."""
    if not condition_holds and system not in VIOLABLE:
        raise ValueError(f"{system!r} has no hyperparameter condition to violate; use one of {VIOLABLE}")
    return _HYPER[system](condition_holds)


@st.composite
def states(draw, system: HDSystem, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """An admissible state: momenta N(0, σ²), Adam's second moment v ∈ [1e-2, 10] (v > 0)."""
    g = _gen(draw)
    sigma = draw(floats_in(0.1, 3.0))
    out = []
    for name in system.state_names:
        if name == "exp_avg_sq":
            out.append(torch.empty(shape, dtype=DT).uniform_(1e-2, 10.0, generator=g))
        else:
            out.append(sigma * torch.randn(shape, generator=g, dtype=DT))
    return tuple(out)


def fit_dims(problem: str, m: int, n: int) -> tuple[int, int]:
    """Problems with shape constraints: deep_linear needs an even m, rosenbrock an even m·n."""
    if problem == "deep_linear" and m % 2:
        m = m + 1 if m < MAX_DIM else m - 1
    if problem == "rosenbrock" and (m * n) % 2:
        m = m + 1 if m < MAX_DIM else m - 1
    return m, n


@dataclass
class HDCase:
    """One generated configuration of the coupled (W, S, P) system."""

    system: HDSystem
    problem: Problem
    side: int
    W: torch.Tensor          # (m, n)
    P: torch.Tensor          # (dim, r): generic, or the identity for full-rank systems
    S: tuple[torch.Tensor, ...]
    t: float

    @property
    def G(self) -> torch.Tensor:
        return self.problem.grad(self.W)


@st.composite
def hd_cases(draw, system: str | None = None, problem: str | None = None, condition_holds: bool = True,
             max_dim: int = 8) -> HDCase:
    """A full case: system with hyperparameters, problem, side, rank, W, generic P, state, t.

    Full-rank systems (``lion_k_wd``, ``muon_wd``) get P = I on the drawn side and W inside the
    ball where the smoothed conjugate 𝒦*(λW) is finite (the box |λW| < 1, or ‖λW‖₂ < 1 for a spectral 𝒦).
    """
    name = system or draw(st.sampled_from(SYSTEMS))
    sys_ = make_system(name, **draw(hyperparameters(name, condition_holds)))
    pname = problem or draw(st.sampled_from(PROBLEMS.names()))
    m, n = fit_dims(pname, *draw(dims(max_dim)))
    prob = make_problem(pname, m=m, n=n, seed=draw(st.integers(0, 1000)))
    side = draw(st.sampled_from([LEFT, RIGHT]))
    dim = basis_dim((m, n), side)
    g = _gen(draw)
    if name in FULL_RANK:
        P = torch.eye(dim, dtype=DT)
        W = torch.empty(m, n, dtype=DT).uniform_(-0.9, 0.9, generator=g) / sys_.wd
        norm = sys_.K.dual_norm(sys_.wd * W)          # the spectral norm for a spectral 𝒦 (≤ ‖·‖_F)
        if norm is not None and float(norm) > 0.9:
            W = W * (0.9 / float(norm))
    else:
        P = draw(bases(dim, draw(st.integers(1, min(m, n)))))
        W = prob.initial_point() + torch.randn(m, n, generator=g, dtype=DT)
    shape = (P.shape[1], n) if side == LEFT else (m, P.shape[1])
    t = draw(floats_in(0.05, 5.0)) if not sys_.autonomous else 0.0
    return HDCase(sys_, prob, side, W, P, draw(states(sys_, shape)), t)


@st.composite
def systems(draw, names: tuple[str, ...] | None = None, condition_holds: bool = True) -> HDSystem:
    """An HD system of ``names`` (default: all registered) with hyperparameters drawn by :func:`hyperparameters`."""
    name = draw(st.sampled_from(list(names or SYSTEMS)))
    return make_system(name, **draw(hyperparameters(name, condition_holds)))


@st.composite
def problems(draw, names: tuple[str, ...] | None = None, max_dim: int = 5, min_dim: int = 2) -> Problem:
    """A problem of ``names`` (default: all registered) with a drawn (m, n) ≤ ``max_dim`` and seed."""
    name = draw(st.sampled_from(list(names or PROBLEMS.names())))
    m, n = fit_dims(name, *draw(dims(max_dim, min_dim)))
    return make_problem(name, m=m, n=n, seed=draw(st.integers(0, 1000)))
