"""Symbolic proofs (sympy) of the HD Lyapunov identities, linked to the torch code.

:func:`prove` / :func:`prove_all` return :class:`ProofResult` rows (see
:mod:`osd_theory.symbolic.proof`); :data:`SYMBOLIC` holds the per-system sympy
definitions (:mod:`osd_theory.symbolic.systems`); :func:`link_to_code` checks them
against :mod:`osd_theory.hd` numerically (:mod:`osd_theory.symbolic.link`).
Importing this package imports sympy; ``import osd_theory`` does not.

For a claims/verify table: ``[r.as_row() for r in prove_all()]`` gives one plain dict per
system (system, method, identity_holds, independent_of_Pdot, matches_code, seconds,
detail); ``r.ok`` is the verdict. All seven systems take ≈ 10 s together on one core.

Example:
    >>> from osd_theory.symbolic import prove
    >>> r = prove("heavy_ball")
    >>> (r.method, r.identity_holds, r.independent_of_Pdot, r.matches_code)
    ('symbolic', True, True, True)
"""
from osd_theory.symbolic.proof import ProofResult, prove, prove_all
from osd_theory.symbolic.systems import SYMBOLIC
from osd_theory.symbolic import spectral as _spectral  # noqa: F401  (registers muon, muon_wd: a matrix 𝒦)

__all__ = ["ProofResult", "prove", "prove_all", "SYMBOLIC", "link_to_code"]


def link_to_code(system_name: str):
    """Lazy re-export of :func:`osd_theory.symbolic.link.link_to_code`."""
    from osd_theory.symbolic.link import link_to_code as _link
    return _link(system_name)
