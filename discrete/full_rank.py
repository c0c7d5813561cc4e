"""Full-rank references from the same core: AdamW, Lion, SGD with momentum, Muon.

They are :class:`~discrete.base.SubspaceOptimizer` with no projection: every parameter takes
the full-rank path ``U = inner(G)``, ``W ← (1 − lr·λ)W + lr·U`` with the inner steps of
:mod:`osd_theory.discrete_steps` (Euler steps of the Adam / Lion-𝒦 / heavy-ball fields plus the
named departures). ``AdamW`` equals ``torch.optim.AdamW`` and ``SGDMomentum`` equals
``torch.optim.SGD(momentum=μ, dampening=0)`` (with decoupled instead of L2 weight decay) to
float32 round-off (tests/discrete/test_equivalence.py); ``Muon`` equals ``torch.optim.Muon`` configured
alike (tests/discrete/test_muon.py).
"""
from __future__ import annotations

from typing import ClassVar

from discrete.step import sharded
from discrete import state as S
from discrete.base import SubspaceOptimizer
from osd_theory.hd.spectral import ADJUST_LR, NS_COEFFICIENTS, NS_EPS, NS_STEPS, ORTHOGONALIZERS


class AdamW(SubspaceOptimizer):
    """AdamW (torch's bias correction and ε placement). Defaults as torch.optim.AdamW (weight_decay 0.01).

    A torch.optim.AdamW state dict loads (its ``amsgrad``, ``capturable``, ``differentiable``, ``fused`` keys are
    accepted at the values that mean this optimizer; ``amsgrad=True`` is refused by name)."""

    projects: ClassVar[bool] = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, **kw):
        super().__init__(params, lr, betas, eps, weight_decay, inner="adamw", **kw)


class Lion(SubspaceOptimizer):
    """Lion (arXiv:2302.06675): W ← (1 − lrλ)W − lr·sign(β₁m + (1−β₁)g), m ← β₂m + (1−β₂)g."""

    projects: ClassVar[bool] = False

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, **kw):
        super().__init__(params, lr, betas, 1e-8, weight_decay, inner="lion", **kw)


class SGDMomentum(SubspaceOptimizer):
    """SGD with momentum as torch (undamped buffer): buf ← μ·buf + g, W ← (1 − lrλ)W − lr·buf."""

    projects: ClassVar[bool] = False

    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0, **kw):
        super().__init__(params, lr, (0.9, 0.999), 1e-8, weight_decay, momentum=momentum, inner="sgd", **kw)


def _check_muon_keys(group: dict) -> None:
    """Muon's own group keys (ValueError naming the key and what is allowed)."""
    S.check_bool("nesterov", group["nesterov"])
    S.check_int("ns_steps", group["ns_steps"], 0)
    if group["ns_steps"] >= 100:
        raise ValueError(f"Invalid ns_steps: {group['ns_steps']}; expected an integer in [0, 100)")
    c = group["ns_coefficients"]
    if not (isinstance(c, (tuple, list)) and len(c) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                   for x in c)):
        raise ValueError(f"Invalid ns_coefficients: {c!r}; expected three numbers (a, b, c)")
    if group["adjust_lr_fn"] is not None and group["adjust_lr_fn"] not in ADJUST_LR:
        raise ValueError(f"Invalid adjust_lr_fn: {group['adjust_lr_fn']!r}; expected None or one of {ADJUST_LR.names()}")
    if group["orthogonalize"] not in ORTHOGONALIZERS:
        raise ValueError(f"Invalid orthogonalize: {group['orthogonalize']!r}; expected one of {ORTHOGONALIZERS.names()}")


class Muon(SubspaceOptimizer):
    """Muon (torch.optim.Muon's defaults and update; Lion-𝒦 with 𝒦 = ‖·‖_*, osd_theory.hd.spectral).

    buf ← μ·buf + (1−μ)g;  O = NS(g + μ(buf − g)) (Nesterov) or NS(buf);  W ← (1 − lr·λ)W − lr·s·O,
    with torch's Newton–Schulz (coefficients, steps, ε) and shape factor s (``adjust_lr_fn``: None or
    "original" √max(1, A/B), "match_rms_adamw" 0.2√max(A, B), "none"). ``orthogonalize="svd"`` takes
    the exact polar factor UVᵀ instead (the step whose H_k claim C5 tracks). 2-D parameters only, as
    torch; a group with another ``inner`` (``{"params": biases_and_norms, "inner": "adamw", "lr": 1e-3}``)
    takes that optimizer's full-rank step instead (Muon's usual auxiliary AdamW, in one optimizer).
    For Muon inside a subspace use GaLore / OSD / RSO with ``inner="muon"`` (and ``momentum``): there
    the defaults of those keys are used.
    """

    projects: ClassVar[bool] = False
    muon_keys: ClassVar[tuple[str, ...]] = ("nesterov", "ns_coefficients", "ns_steps", "adjust_lr_fn", "orthogonalize")

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=NS_COEFFICIENTS, eps=NS_EPS, ns_steps=NS_STEPS, adjust_lr_fn=None,
                 orthogonalize="newton_schulz", **kw):
        self._muon_defaults = dict(nesterov=nesterov, ns_coefficients=tuple(ns_coefficients) if isinstance(
            ns_coefficients, (list, tuple)) else ns_coefficients, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
            orthogonalize=orthogonalize)
        _check_muon_keys(self._muon_defaults)
        super().__init__(params, lr, (0.9, 0.999), eps, weight_decay, momentum=momentum, inner="muon", **kw)
        self.defaults.update(self._muon_defaults)      # groups added later (and after unpickling) get them

    def add_param_group(self, param_group: dict) -> None:
        for key in self.muon_keys:
            param_group.setdefault(key, self.defaults.get(key, self.__dict__.get("_muon_defaults", {}).get(key)))
        super().add_param_group(param_group)

    def _check_group(self, group: dict, params: list) -> None:
        _check_muon_keys({k: group.get(k, self.defaults.get(k)) for k in self.muon_keys})
        if group.get("inner", "muon") == "muon":
            bad = [tuple(p.shape) for p in params if p.ndim != 2]
            if bad:
                raise ValueError(f"Muon only supports 2-D parameters, got one of shape {bad[0]}; put the others in a "
                                 "group with inner='adamw' (or give them to another optimizer)")
            if sharded.is_sharded(params):
                raise ValueError("Muon needs whole matrices: FSDP2-sharded (DTensor) parameters are not supported "
                                 "(Newton-Schulz of a row shard is not a shard of Newton-Schulz)")
        super()._check_group({k: v for k, v in group.items() if k not in self.muon_keys}, params)
