"""Symbolic proofs (sympy) of the HD Lyapunov identities, linked to the torch code.

:func:`prove` / :func:`prove_all` return :class:`ProofResult` rows (see
:mod:`osd_theory.symbolic.proof`); :data:`SYMBOLIC` holds the per-system sympy
definitions (:mod:`osd_theory.symbolic.systems`); :func:`link_to_code` checks them
against :mod:`osd_theory.hd` numerically (:mod:`osd_theory.symbolic.link`).
Importing this package imports sympy; ``import osd_theory`` does not.
"""
from osd_theory.symbolic.proof import ProofResult, prove, prove_all
from osd_theory.symbolic.systems import SYMBOLIC

__all__ = ["ProofResult", "prove", "prove_all", "SYMBOLIC", "link_to_code"]


def link_to_code(system_name: str):
    """Lazy re-export of :func:`osd_theory.symbolic.link.link_to_code`."""
    from osd_theory.symbolic.link import link_to_code as _link
    return _link(system_name)
