"""The paper's claims as checks: a registry ``claim id -> "module:function"``, imported lazily.

Each function has the signature ``fn(quick: bool) -> dict`` (a claim with sweeps too long for the
default run also takes ``heavy: bool = False``: ``osd-theory verify --heavy`` turns them on) and returns
``{"claim", "statement", "verdict", "evidence"}`` (+ optional ``"details"``), with
``verdict`` one of :data:`VERDICTS`, computed from what the runs showed. Every claim also
states the verdict it **predicts** (:data:`EXPECTED`): "violated" can be the prediction (C4
predicts that Assumption 4.4(ii) fails). ``osd-theory verify`` fails (exit 1) when a verdict
differs from its prediction or a check raises, so a planted bug that changes an outcome is
caught.

| id | claim                                                                        | predicts  | lives in                       |
|----|------------------------------------------------------------------------------|-----------|--------------------------------|
| C0 | dH/dt = −Δ for every Ṗ, proved with sympy and linked to the torch code        | holds     | osd_theory.claims.symbolic     |
| C1 | dH/dt ≤ 0 for arbitrary projection dynamics Γ, and Δ is dH/dt (THEORY §1.2)  | holds     | ode.claims                     |
| C2 | each system's own condition() is the boundary where dH/dt ≤ 0 stops (§3)     | holds     | ode.claims                     |
| C3 | Theorem 4.5 where Assumption 4.4(ii) holds                                   | holds     | ode.claims                     |
| C4 | the exact online-PCA flow violates Assumption 4.4(ii) (THEORY §2)            | violated  | ode.claims                     |
| C5 | discrete H_k: order-1 convergence to H(t), sharp monotonicity threshold      | holds     | osd_theory.claims.discrete_ode |
| C6 | the blind set attracts below a predicted α* and repels above it              | holds     | ode.stall                      |
| C7 | stochastic gradients: noise floors, GaLore's stall (GoLore), OSD and RSO      | holds     | osd_theory.claims.stochastic   |
| C8 | LLaMA runs: Adam's preconditioned sharpness settles at 38/η (projected, for GaLore/OSD) | holds | discrete.validation.claims |
| C9 | LLaMA runs: RSO's residual right after every resample is √(1 − r/d)          | holds     | discrete.validation.claims     |
| C10| Muon = spectral Lion-𝒦: H non-increasing; weight-decay limit ‖λW‖₂ ≤ 1        | holds     | osd_theory.claims.spectral     |

C8 and C9 are pre-registered (docs/training-claims.md): a CPU part runs a tiny LLaMA here, a GPU
part (60M) is read from its recorded log, or reported "not measured".

``osd_theory`` never imports :mod:`ode`, :mod:`discrete` or sympy at import time: the targets
are strings resolved by :func:`resolve` when a claim runs.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Callable

VERDICTS = ("holds", "violated", "inconclusive")

CLAIMS: dict[str, str] = {
    "C0": "osd_theory.claims.symbolic:c0",
    "C1": "ode.claims:c1",
    "C2": "ode.claims:c2",
    "C3": "ode.claims:c3",
    "C4": "ode.claims:c4",
    "C5": "osd_theory.claims.discrete_ode:c5",
    "C6": "ode.stall:c6",
    "C7": "osd_theory.claims.stochastic:c7",
    "C8": "discrete.validation.claims:c8",
    "C9": "discrete.validation.claims:c9",
    "C10": "osd_theory.claims.spectral:c10",
}

# The verdict each claim predicts; verify exits 1 when a run disagrees.
EXPECTED: dict[str, str] = {
    "C0": "holds", "C1": "holds", "C2": "holds", "C3": "holds", "C4": "violated",
    "C5": "holds", "C6": "holds", "C7": "holds",
    "C8": "holds", "C9": "holds",   # pre-registered in docs/training-claims.md
    "C10": "holds",
}


# One line per claim for the table's statement column (the full statement is in each result).
TITLES: dict[str, str] = {
    "C0": "dH/dt = -Delta for every Pdot, proved symbolically and linked to the code",
    "C1": "dH/dt <= 0 for arbitrary projection dynamics Gamma",
    "C2": "each system's condition() is where dH/dt <= 0 stops",
    "C3": "Theorem 4.5 where Assumption 4.4(ii) holds",
    "C4": "the exact online-PCA flow violates Assumption 4.4(ii)",
    "C5": "discrete H_k: sharp threshold, order-1 convergence to H(t)",
    "C6": "the blind set's local stability switches at alpha* (right side)",
    "C7": "stochastic gradients: noise floors, GaLore's GoLore stall",
}


def title(claim_id: str, statement: str = "") -> str:
    """The claim's one-line title, or the start of its statement when it has none."""
    if claim_id in TITLES:
        return TITLES[claim_id]
    first = statement.split(":")[0].split(";")[0]
    return first if len(first) <= 70 else first[:67] + "..."


class ClaimUnavailable(Exception):
    """The module implementing a claim is not installed / not written yet."""


def resolve(target: str) -> Callable[[bool], dict]:
    """``"pkg.mod:fn"`` -> the function; a missing module raises :class:`ClaimUnavailable`."""
    mod_name, _, fn_name = target.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        # only the claim's own module (or a parent package) missing counts as "unavailable";
        # a missing dependency *inside* an existing module is a real error
        if exc.name is not None and (mod_name == exc.name or mod_name.startswith(exc.name + ".")):
            raise ClaimUnavailable(f"{mod_name} not available") from None
        raise
    try:
        return getattr(module, fn_name)
    except AttributeError:
        raise ClaimUnavailable(f"{mod_name} has no function {fn_name}") from None


def run_claim(claim_id: str, quick: bool = False, heavy: bool = False) -> dict:
    """Run one claim and compare its verdict with :data:`EXPECTED`.

    The result gains ``"expected"`` and ``"as_expected"``; an unavailable implementation
    gives an "inconclusive" result, which is never as expected. ``heavy`` is passed only to
    claims whose function takes it (the others have no heavier sweep).
    """
    target = CLAIMS[claim_id]
    expected = EXPECTED.get(claim_id, "holds")
    try:
        fn = resolve(target)
    except ClaimUnavailable as exc:
        return {"claim": claim_id, "statement": f"(implemented in {target})", "verdict": "inconclusive",
                "expected": expected, "as_expected": False, "evidence": str(exc)}
    try:
        takes_heavy = "heavy" in inspect.signature(fn).parameters
    except (TypeError, ValueError):   # a builtin without a signature: it has no heavy sweep
        takes_heavy = False
    result = dict(fn(quick, heavy=True) if heavy and takes_heavy else fn(quick))
    result.setdefault("claim", claim_id)
    if result.get("verdict") not in VERDICTS:
        raise ValueError(f"claim {claim_id} returned verdict {result.get('verdict')!r}; expected one of {VERDICTS}")
    result["expected"] = expected
    result["as_expected"] = result["verdict"] == expected
    return result


__all__ = ["CLAIMS", "EXPECTED", "TITLES", "VERDICTS", "run_claim", "resolve", "title", "ClaimUnavailable"]
