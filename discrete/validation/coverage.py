"""Coverage state of a run (``--coverage``): W_0 of the projected matrices and the visit sums.

Why does OSD train worse than GaLore (docs/results/validation/osd_vs_galore/)? One hypothesis is that GaLore's periodic SVD
refreshes visit more directions over a run than OSD's continuous tracking. This module keeps
what the two metric families of :mod:`metrics` need across the whole run:

* per projected matrix j, the running visit sum Pi_j = sum_k Q_k Q_k^T (d_j x d_j, float32, on the
  parameter's device) over the log steps k so far, and their count K: ``visited_dim*`` on train
  records (only for optimizers with projectors);
* W_0, a detached copy of every projected matrix at step 0: ``update_*`` on eval records,
  from dW = W_t - W_0 (for AdamW too, over the same matrices, with the rank GaLore would use).

Which matrices: :func:`optim.split_params`'s projected list (attention and MLP linears), for every
optimizer, indexed by position (``id(param)`` does not survive a resume). The state goes into the
checkpoint (:meth:`Coverage.state_dict`), so a resumed run logs what an uninterrupted one does.
Memory: W_0 is one more copy of those weights, and Pi_j is d_j^2 floats per matrix; hence opt-in.

Pi is sampled at log steps, so ``--log-every`` sets how often a visit is counted (a resume that
changes it changes the sampling from then on).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from discrete.validation import metrics as M
from osd_theory.errors import UserError


class Coverage:
    """W_0, the visit sums Pi_j and their count K for ``matrices`` (the projected params, in order)."""

    def __init__(self, matrices: list[nn.Parameter], rank: int, w0: list[torch.Tensor]):
        self.matrices = matrices
        self.rank = rank
        self.w0 = w0
        self.pi: list[torch.Tensor | None] = [None] * len(matrices)  # allocated at a matrix's first projector
        self.k = 0

    def observe(self, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """Add the projectors after this step to Pi (a log step); the ``visited_dim*`` keys, or {}."""
        projs = M.projectors(optimizer)
        seen = False
        for j, p in enumerate(self.matrices):
            if id(p) in projs:
                self.pi[j] = M.add_visit(self.pi[j], projs[id(p)][0].detach())
                seen = True
        self.k += seen
        # the participation ratio is scale-free: Pi gives the number Pi_bar = Pi / K does, without a copy
        return M.visited_dim([pi for pi in self.pi if pi is not None])

    def update_metrics(self) -> dict[str, float]:
        """The ``update_*`` keys of dW = W_t - W_0 (an eval step)."""
        # one dW at a time: float64 copies of every matrix at once would be 2x the weights
        deltas = (p.detach().double() - w0.double() for p, w0 in zip(self.matrices, self.w0))
        return M.update_shape(deltas, self.rank)

    def state_dict(self) -> dict:
        return {"w0": list(self.w0), "pi": list(self.pi), "k": self.k}

    def load_state_dict(self, state: dict) -> None:
        """Take W_0, Pi and K from a checkpoint; UserError if they do not fit these matrices."""
        w0, pi = state["w0"], state["pi"]
        fits = len(w0) == len(pi) == len(self.matrices) and all(
            a.shape == p.shape and (b is None or b.shape[0] == b.shape[1] and b.shape[0] in p.shape)
            for a, b, p in zip(w0, pi, self.matrices))
        if not fits:
            raise UserError("--resume: the checkpoint's coverage state does not fit this model")
        self.w0 = [a.to(p.device, p.dtype) for a, p in zip(w0, self.matrices)]
        self.pi = [None if b is None else b.to(p.device, torch.float32) for b, p in zip(pi, self.matrices)]
        self.k = int(state["k"])


def start(model: nn.Module, cfg, ck: dict | None, keep: bool = True) -> Coverage | None:
    """The run's coverage state: fresh (W_0 = the weights now) or from checkpoint ``ck``.

    None without ``cfg.coverage`` or without ``keep`` (DDP ranks other than 0, which log nothing);
    every rank checks the checkpoint, so a bad one stops them all.
    """
    if not cfg.coverage:
        return None
    if ck is not None and "coverage" not in ck.get("extra", {}):
        raise UserError(f"--resume: the checkpoint in {cfg.out} holds no coverage state (W_0 is lost); "
                        "start the run again with --overwrite")
    if not keep:
        return None
    from discrete.validation.optim import split_params

    matrices = split_params(model)[0]
    if ck is None:
        return Coverage(matrices, cfg.rank, [p.detach().clone() for p in matrices])
    cov = Coverage(matrices, cfg.rank, [])
    cov.load_state_dict(ck["extra"]["coverage"])
    return cov
