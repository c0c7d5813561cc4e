"""osd-theory: the math core.

Hamiltonian Descent systems (:mod:`osd_theory.hd`), projection rules
(:mod:`osd_theory.projections`), test problems (:mod:`osd_theory.problems`), per-matrix
kernels shared with the discrete optimizers (:mod:`osd_theory.kernels`), symbolic proofs,
verdicts and the paper's claims. Importing it needs only torch (sympy, torchdiffeq and
matplotlib are imported where they are used).
"""
__version__ = "0.1.0"
