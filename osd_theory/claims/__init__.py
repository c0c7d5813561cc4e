"""The paper's claims as checks: a registry ``claim id -> "module:function"``, imported lazily.

Each function has the signature ``fn(quick: bool) -> dict`` and returns
``{"claim", "statement", "verdict", "evidence"}`` (+ optional ``"details"``), with
``verdict`` one of :data:`VERDICTS`. A verdict of "violated" is a *finding*, not a failure:
C4 predicts that Assumption 4.4(ii) is violated. Only an exception is a failed check.

| id | claim                                                              | lives in        |
|----|--------------------------------------------------------------------|-----------------|
| C1 | dH/dt ≤ 0 for arbitrary projection dynamics Γ (THEORY §1.2)        | ode.claims      |
| C2 | Adam's H is Lyapunov iff b ≤ 4a (THEORY §3.2)                       | ode.claims      |
| C3 | Theorem 4.5: bounded solutions converge to stationary points        | ode.claims      |
| C4 | Assumption 4.4(ii) fails for the exact online-PCA flow (THEORY §2)  | ode.claims      |
| C5 | discrete-time counterpart (another package)                         | discrete.claims |

``osd_theory`` never imports :mod:`ode` or :mod:`discrete` at import time: the targets
are strings resolved by :func:`resolve` when a claim runs.
"""
from __future__ import annotations

import importlib
from typing import Callable

VERDICTS = ("holds", "violated", "inconclusive")

CLAIMS: dict[str, str] = {
    "C1": "ode.claims:c1",
    "C2": "ode.claims:c2",
    "C3": "ode.claims:c3",
    "C4": "ode.claims:c4",
    "C5": "discrete.claims:c5",
}


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


def run_claim(claim_id: str, quick: bool = False) -> dict:
    """Run one claim; an unavailable implementation gives an "inconclusive" result."""
    target = CLAIMS[claim_id]
    try:
        fn = resolve(target)
    except ClaimUnavailable as exc:
        return {"claim": claim_id, "statement": f"(implemented in {target})", "verdict": "inconclusive",
                "evidence": str(exc)}
    result = dict(fn(quick))
    result.setdefault("claim", claim_id)
    if result.get("verdict") not in VERDICTS:
        raise ValueError(f"claim {claim_id} returned verdict {result.get('verdict')!r}; expected one of {VERDICTS}")
    return result


__all__ = ["CLAIMS", "VERDICTS", "run_claim", "resolve", "ClaimUnavailable"]
