"""Claim C0: the Lyapunov identities dH/dt = −Δ, proved symbolically for every Ṗ and linked to the code.

For every HD system, :func:`osd_theory.symbolic.prove` differentiates H along the field with a
generic P on both sides and an unspecified Ṗ, checks ∂H/∂P ≡ 0, ∂(dH/dt)/∂Ṗ ≡ 0 and
dH/dt + Δ ≡ 0, and lambdifies the sympy field, H and Δ against :mod:`osd_theory.hd` at random
points (:mod:`osd_theory.symbolic.link`). A proof machinery that cannot fail proves nothing, so
the claim also runs **negative controls**: planted wrong systems (a halved Δ, a dropped term of
Adam's Δ, a flipped sign in Signum's Ẇ) must be *rejected*. If a control is accepted the verdict
is "inconclusive" (the reduction or the link is broken), not "holds".

Needs sympy (imported when the claim runs). About 10 s on one core.
"""
from __future__ import annotations

import time


def planted_controls():
    """Wrong twins of three systems: (label, definition). Built lazily (sympy)."""
    import sympy as sp

    from osd_theory.symbolic.calculus import kp
    from osd_theory.symbolic.systems import Adam, HeavyBall, Signum

    class HalvedDelta(HeavyBall):
        def dissipation(self, h, S, g, W):
            return super().dissipation(h, S, g, W) / 2

    class AdamDroppedTerm(Adam):
        def dissipation(self, h, S, g, W):     # Δ without q Σ m²ĝ²/(s(s+e)²)
            m, v = S
            q = h.b / (4 * h.a)
            return sum((mi**2 / (sp.sqrt(vi) + h.e) * (1 - q * sp.sqrt(vi) / (sp.sqrt(vi) + h.e))
                        for mi, vi in zip(m, v)), sp.Integer(0))

    class SignumFlipped(Signum):
        def direction(self, h, S, g, W):
            return S[0].applyfunc(kp)          # the code has −k'(m)

    return [("heavy_ball with Delta/2", HalvedDelta()), ("adam without its m^2 g^2 term", AdamDroppedTerm()),
            ("signum with +k'(m) in Wdot", SignumFlipped())]


def c0(quick: bool = False) -> dict:
    """Run every proof (sympy) and the negative controls; the verdict is computed from both."""
    from osd_theory.symbolic import prove, prove_all

    statement = ("dH/dt = -Delta holds identically for every HD system, for a generic P on both sides and an "
                 "unspecified Pdot (H does not depend on P), and the sympy definitions are the torch code's "
                 "(THEORY §1.2, §3); planted wrong Delta or field are rejected")
    t0 = time.perf_counter()
    results = prove_all(link=True)
    t_proofs = time.perf_counter() - t0
    controls = []
    for label, sysdef in planted_controls():
        r = prove(sysdef, link=False)
        controls.append({"control": label, "rejected": not r.identity_holds, "method": r.method})
    rows = [r.as_row() for r in results]
    ok = [r.system for r in results if r.ok]
    failed = [f"{r.system} ({'identity' if not r.identity_holds else 'P-dependence' if not r.independent_of_Pdot else 'link to code'})"
              for r in results if not r.ok]
    methods = sorted({r.method for r in results})
    accepted = [c["control"] for c in controls if not c["rejected"]]
    verdict = "violated" if failed else ("inconclusive" if accepted else "holds")
    evidence = (f"{len(ok)}/{len(results)} systems proved ({', '.join(ok)}; method {'/'.join(methods)}) and linked to "
                f"osd_theory.hd in {t_proofs:.1f} s"
                + (f"; FAILED: {', '.join(failed)}" if failed else "")
                + f"; negative controls rejected {len(controls) - len(accepted)}/{len(controls)}"
                + (f" (ACCEPTED, so the proof cannot fail: {', '.join(accepted)})" if accepted else ""))
    return {"claim": "C0", "statement": statement, "verdict": verdict, "evidence": evidence,
            "details": {"proofs": rows, "controls": controls, "seconds_proofs": round(t_proofs, 2)}}
