"""A trajectory: plain float64 tensors sampled at accepted steps, plus jumps and metadata.

``columns`` (name -> (N,) tensor, see :data:`ode.diagnostics.COLUMNS`), ``jumps`` (name ->
(J,) tensor: ``t``, ``H_before``, ``H_after``, ``proj_grad_before``, ``proj_grad_after``) and
``meta`` (JSON-serialisable: optimizer, projection, problem, tolerances, condition,
how the run ended). Saved as ``.npz`` (arrays + meta as a JSON string) or ``.json``.
Verdicts (:mod:`osd_theory.verdicts`) read these arrays; they never import :mod:`ode`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from osd_theory.errors import UserError

JUMP_COLUMNS = ("t", "H_before", "H_after", "proj_grad_before", "proj_grad_after")


def _empty() -> Tensor:
    return torch.zeros(0, dtype=torch.float64)


@dataclass
class Trajectory:
    """A simulated run: diagnostics at accepted steps, projection jumps, and how the run was made.

    ``traj["H"]`` is a column, ``traj.final("grad_norm")`` its last value, ``len(traj)`` the number
    of samples; ``traj.final_y`` (not saved) is the last recorded state tuple ``(W, S…, P, E)``.
    """

    columns: dict[str, Tensor]
    """name → (N,) float64 tensor sampled at the solver's accepted steps: ``t``, ``h``, ``H``, ``L``,
    ``dHdt`` (closed form −Δ), ``dHdt_autodiff``, ``residual``, ``grad_norm``, ``proj_grad_norm``,
    ``orth_defect``, ``W_norm``, ``S_norm``, ``P_norm``, ``E``, ``dist_star`` (see :mod:`ode.diagnostics`)."""
    jumps: dict[str, Tensor] = field(default_factory=lambda: {k: _empty() for k in JUMP_COLUMNS})
    """name → (J,) tensor, one entry per projection jump: ``t``, ``H_before``, ``H_after``,
    ``proj_grad_before``, ``proj_grad_after``."""
    meta: dict = field(default_factory=dict)
    """JSON-serialisable description: optimizer, projection, problem, config, condition, ``status``
    (how the run ended), ``nfev``, ``wall_s``, ``resolved`` (every hyperparameter used) and ``spec``."""

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"no column {name!r}; columns are {sorted(self.columns)}") from None

    def __len__(self) -> int:
        return int(self.columns["t"].numel())

    def final(self, name: str) -> float:
        return float(self.columns[name][-1])

    @property
    def energy_defect(self) -> Tensor:
        """δ_n = (H + E)_{n+1} − (H + E)_n  (N−1,), zero for the exact flow (THEORY.md §7.3).

        Across a jump H is continuous (H does not depend on P), so the defect still
        measures only the integrator.
        """
        HE = self["H"] + self["E"]
        return HE[1:] - HE[:-1]

    # -- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict:
        def lst(t: Tensor):
            return [None if not math.isfinite(x) else x for x in t.tolist()]
        return {"columns": {k: lst(v) for k, v in self.columns.items()},
                "jumps": {k: lst(v) for k, v in self.jumps.items()}, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Trajectory":
        def ten(v):
            return torch.tensor([math.nan if x is None else x for x in v], dtype=torch.float64)
        return cls({k: ten(v) for k, v in d["columns"].items()},
                   {k: ten(v) for k, v in d.get("jumps", {}).items()} or {k: _empty() for k in JUMP_COLUMNS},
                   dict(d.get("meta", {})))

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` or ``.json`` (chosen by the suffix)."""
        path = Path(path)
        if path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict(), allow_nan=False))
        elif path.suffix == ".npz":
            arrays = {f"col_{k}": v.numpy() for k, v in self.columns.items()}
            arrays.update({f"jump_{k}": v.numpy() for k, v in self.jumps.items()})
            np.savez(path, meta=np.array(json.dumps(self.meta)), **arrays)
        else:
            raise UserError(f"trajectory file must end in .npz or .json, got {str(path)!r}")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Trajectory":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"trajectory file not found: {str(path)!r}")
        if path.suffix == ".json":
            return cls.from_dict(json.loads(path.read_text()))
        if path.suffix != ".npz":
            raise UserError(f"trajectory file must end in .npz or .json, got {str(path)!r}")
        with np.load(path, allow_pickle=False) as z:
            cols = {k[4:]: torch.from_numpy(z[k].copy()) for k in z.files if k.startswith("col_")}
            jumps = {k[5:]: torch.from_numpy(z[k].copy()) for k in z.files if k.startswith("jump_")}
            meta = json.loads(str(z["meta"]))
        return cls(cols, jumps, meta)
