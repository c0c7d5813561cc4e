"""Per-layer mode: each projected matrix gives up its full-size gradient as soon as that gradient is complete.

A hook (``Tensor.register_post_accumulate_grad_hook``) on every projected matrix W (m, n) runs when
W's gradient G is complete in backward, computes from G all that the step needs of it, and frees G
(``W.grad = None``). Peak memory then holds the full-size gradient of one matrix at a time instead of all
of them (GaLore's per-layer weight updates, arXiv:2403.03507).

**Deferred (default): the same step as the ordinary mode.** What the step needs of G is linear in G or
invariant to its scale, so it can be computed before the clipping factor c and the lr are known:

* step 1 — the new basis (P₀, GaLore's SVD, RSO's draw): the singular vectors of cG are those of G;
* step 2 — Ĝ = project(P, G): the step later uses c·Ĝ = project(P, cG);
* step 5's field (built-in smooth rules): a function of G̃ = G/‖G‖, which c does not change;
* ‖G‖, for the global norm and the non-finite check.

The hook keeps Ĝ (the size of one moment), the field (the size of P, smooth rules) and, on refresh steps,
the new basis; everything that reads the lr or c, or changes the optimizer state, runs in
``optimizer.step()`` (steps 3–5, :func:`discrete.subspace.projected_step_`, and the commit of the basis).
So the three things GaLore's layer-wise mode breaks keep their meaning:

* **clipping**: :meth:`PerLayer.clip_grad_norm_` returns the global norm over every gradient — freed
  ones included — and applies c = min(1, max_norm/(norm + 1e-6)) (torch's formula) to Ĝ and to the live
  full-rank gradients; ``torch.nn.utils.clip_grad_norm_`` would see only the live ones (GaLore's
  "grad-norm 0", jiaweizzhao/GaLore#66), so use this one.
* **the lr schedule**: the update uses the group's lr at ``step()``, as the ordinary mode
  (GaLore's per-parameter optimizers and schedulers double-step, #62).
* **accumulation**: with ``accumulation_steps=K`` the hook lets the first K − 1 backward passes of a step
  accumulate into ``W.grad`` as usual and acts on the K-th, so the step sees ΣG_k, exactly as the ordinary
  mode (GaLore#78 measured a 0.98 relative error from acting on every micro-batch). The full-size
  gradients then live during the first K − 1 passes: the saving is in the last pass and in the step, so
  prefer a larger micro-batch with activation checkpointing to accumulation.

Equal to the ordinary mode: bit-equal without clipping, to float32 round-off with it (c·PᵀG against
Pᵀ(cG); OSD's Adam on P amplifies that round-off at an SVD P₀, see tests/discrete/test_per_layer.py).
Full-rank parameters (embeddings, norms) keep the ordinary path. The hook prepares an
:class:`~discrete.step.items.Item` with the single executor's public :func:`~discrete.step.single.prepare_item`
or the batched executor's (pure: a user rule that fails raises in backward with nothing changed), and ``step()`` commits the prepared
items through the optimizer's :meth:`~discrete.base.SubspaceOptimizer.run`, batched as the ordinary step.
Param groups are looked up at use time, so a ``load_state_dict`` after wrapping (which replaces the group
dicts) is honoured. A user smooth rule whose field is not invariant to the scale
of G would see the unclipped G.

**``in_backward=True``: the whole step in the hook** (GaLore's layer-wise mode, without its traps): every
parameter, projected or not, takes its step in backward and nothing is kept, so the saving is largest
(full-rank optimizers gain too). The lr is the group's lr during backward (set it before backward, e.g.
``scheduler.step()`` after ``optimizer.step()``, as usual); accumulation works as above; global-norm
clipping is impossible (no matrix may wait for the norm) and refused; :meth:`grad_norm` still reports
the true norm; ``nonfinite="raise"`` is refused (a raise in backward would leave the earlier layers stepped).

Not supported, with a clear error: FSDP2 (DTensor) parameters (``PerLayer`` refuses them). DDP is not
detectable from here and is wrong: DDP's hooks all-reduce the gradient *after* the post-accumulate hook
runs; ``osd-theory validate --per-layer`` refuses more than one process.

Example:
    >>> import torch
    >>> from discrete import GaLore, PerLayer
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    >>> mats = [p for p in model.parameters() if p.ndim == 2][:1]
    >>> rest = [p for p in model.parameters() if not any(p is q for q in mats)]
    >>> opt = GaLore([{"params": rest}, {"params": mats, "rank": 2}], lr=1e-2)
    >>> layers = PerLayer(opt, accumulation_steps=2)
    >>> for k in range(2):
    ...     model(torch.randn(4, 8)).pow(2).mean().backward()
    >>> mats[0].grad is None                  # freed in backward, Ĝ kept
    True
    >>> norm = layers.clip_grad_norm_(1.0)    # the global norm, the freed gradient included
    >>> _ = opt.step(); opt.zero_grad()
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import Tensor

from discrete import state as S
from discrete.base import SubspaceOptimizer
from discrete.step import checks
from discrete.step.executors import EXECUTORS
from discrete.step.items import Item
from discrete.step.sharded import is_dtensor
from osd_theory.errors import UserError


def kept_bytes(it: Item) -> int:
    """Bytes an item keeps from backward for ``step()``: Ĝ, the field, a new basis, a first step's state."""
    tensors = [it.G_hat, it.field, it.P_new, *(it.state.values() if it.fresh else ())]
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t) and t.ndim > 0)


class PerLayer:
    """Per-layer mode for a :class:`~discrete.base.SubspaceOptimizer` (see the module docstring).

    Args:
        optimizer: a GaLore, OSD, RSO or full-rank optimizer of this package, with all its param groups.
        accumulation_steps: K ≥ 1 backward passes per optimizer step (gradient accumulation).
        in_backward: step every parameter inside backward (no global clipping; see above).

    Attributes:
        optimizer: the optimizer.
    """

    def __init__(self, optimizer: SubspaceOptimizer, *, accumulation_steps: int = 1, in_backward: bool = False):
        if not isinstance(optimizer, SubspaceOptimizer):
            raise UserError("PerLayer needs an optimizer of this package (discrete.OPTIMIZERS), "
                            f"got {type(optimizer).__name__}")
        S.check_int("accumulation_steps", accumulation_steps, 1)
        S.check_optional_bool("in_backward", in_backward)
        if in_backward and any(g["nonfinite"] == "raise" for g in optimizer.param_groups):
            raise UserError("PerLayer(in_backward=True) cannot honour nonfinite='raise' (a raise in backward would "
                            "leave the earlier layers stepped): pass nonfinite='skip' or 'ignore', or use the deferred mode")
        self.optimizer = optimizer
        self.accumulation_steps = accumulation_steps
        self.in_backward = bool(in_backward)
        # id(p) -> (group position, parameter index over all groups): the group dict itself is looked up at use
        # time (load_state_dict replaces the dicts)
        self._where: dict[int, tuple[int, int]] = {}
        self._param: dict[int, Tensor] = {}
        index = 0
        for gi, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                if is_dtensor(p):
                    raise UserError("per-layer mode does not support FSDP2 (DTensor) parameters: use either "
                                    "PerLayer or fully_shard, not both (docs/scaling.md)")
                if self.in_backward or self._projected(p, group):
                    self._where[id(p)], self._param[id(p)] = (gi, index), p
                index += 1
        self._passes: dict[int, int] = {}                # backward passes seen since the last completed gradient
        self._pending: dict[int, Item] = {}              # deferred mode: prepared items
        self._freed_norms: list[Tensor] = []             # in_backward mode: ‖G‖ of the gradients stepped and freed
        self._clip: Tensor | None = None                 # c of clip_grad_norm_, until step()
        self._skip: set[int] = set()                     # pending entries dropped by nonfinite="skip"
        self._diagnostics: dict[str, Any] = {}
        # an OrderedDict, as torch keeps hooks: RemovableHandle holds it by weak reference (a dict cannot be)
        self._watchers: OrderedDict[int, Callable[[Tensor, Tensor], None]] = OrderedDict()
        self._handles = [p.register_post_accumulate_grad_hook(self._hook) for p in self._param.values()]
        self._handles += [optimizer.register_step_pre_hook(self._pre_step),
                          optimizer.register_step_post_hook(self._post_step)]

    @staticmethod
    def _projected(p: Tensor, group: dict) -> bool:
        return "rank" in group and p.ndim == 2

    def _item(self, p: Tensor) -> Item:
        gi, index = self._where[id(p)]
        return self.optimizer.item(p, self.optimizer.param_groups[gi], index, gi)

    # -- backward ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _hook(self, p: Tensor) -> None:
        key = id(p)
        passes = self._passes.get(key, 0) + 1
        if passes < self.accumulation_steps:        # not complete yet: accumulate into p.grad as usual
            self._passes[key] = passes
            return
        self._passes[key] = 0
        if key in self._pending:
            raise UserError("per-layer mode: a second complete gradient reached a parameter before optimizer.step() "
                            f"(accumulation_steps={self.accumulation_steps}); pass the number of backward passes per "
                            "step as accumulation_steps, or call PerLayer.discard() to drop the pending update")
        S.check_sparse(type(self.optimizer).__name__, p.grad)
        for fn in list(self._watchers.values()):
            fn(p, p.grad)
        if self.in_backward:
            self._step_now(p)
        else:
            self._pending[key] = self._prepare(p)
        p.grad = None                                # the point of the mode: the full-size G goes now

    def _prepare(self, p: Tensor) -> Item:
        """Everything of steps 1, 2 and 5 that needs G; changes no optimizer state."""
        it = self._item(p)
        checks.compute_norms([it])
        # prepared by the executor that will commit it, so that the per-layer step is bit-equal to the ordinary one
        # (the same products in the same shapes)
        EXECUTORS.get(self.optimizer.executor_of(it)).prepare_item(it)
        it.grad = None                               # the item must not keep the full-size G alive
        return it

    def _step_now(self, p: Tensor) -> None:
        """in_backward mode: the ordinary step of one parameter, now (its notes kept for step()'s diagnostics)."""
        opt = self.optimizer
        gi, _ = self._where[id(p)]
        policy = opt.param_groups[gi]["nonfinite"]
        if policy == "raise":                      # set after construction (checked there): refuse, do not half-step
            raise UserError("PerLayer(in_backward=True) cannot honour nonfinite='raise'")
        it = self._item(p)
        checks.compute_norms([it])
        kept, skipped = checks.apply_policy(type(opt).__name__, [it], [policy])   # one host sync ("skip")
        if skipped:
            self._diagnostics["skipped_nonfinite"] = self._diagnostics.get("skipped_nonfinite", 0) + skipped
            return
        self._freed_norms.append(it.norm)
        saved, opt.diagnostics = opt.diagnostics, self._diagnostics    # step() resets diagnostics: note here
        try:
            opt.run(kept)
        finally:
            opt.diagnostics = saved

    def watch(self, fn: Callable[[Tensor, Tensor], None]) -> torch.utils.hooks.RemovableHandle:
        """Call ``fn(p, G)`` with every complete gradient G (p's shape) in backward, before it is stepped or freed.

        The mode frees each gradient as soon as its update is prepared (or taken), so whatever needs the gradients
        of a step (a metric such as the projection residual of the theory log) reads them here. ``fn`` must not
        change G. Returns a handle whose ``remove()`` stops the calls.
        """
        handle = torch.utils.hooks.RemovableHandle(self._watchers)
        self._watchers[handle.id] = fn
        return handle

    # -- the global norm and clipping --------------------------------------------------------------
    def _norms(self) -> list[Tensor]:
        """‖G‖ of every gradient of this step: freed ones (scaled by c if clipped) and live ones."""
        c = self._clip
        freed = [e.norm for e in self._pending.values()] + self._freed_norms
        freed = [n if c is None else n * c for n in freed]
        live = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        return freed + S.grad_norms(live)

    def grad_norm(self) -> Tensor:
        """The global 2-norm over all gradients of this step, the freed ones included (no clipping)."""
        norms = self._norms()
        if not norms:
            return torch.zeros(())
        dev = norms[0].device
        return torch.linalg.vector_norm(torch.stack([n.float().to(dev) for n in norms]))

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
        """``torch.nn.utils.clip_grad_norm_`` over the optimizer's parameters, freed gradients included.

        Returns the total norm before clipping; the factor c = min(1, max_norm/(norm + 1e-6)) scales the
        live gradients now and the pending Ĝ at ``step()``.
        """
        if self.in_backward:
            raise UserError("PerLayer(in_backward=True) steps during backward, before the global norm exists: "
                            "global-norm clipping needs the default (deferred) per-layer mode")
        if norm_type != 2.0:
            raise UserError(f"per-layer clipping supports the 2-norm only, got norm_type={norm_type!r}")
        total = self.grad_norm()
        if error_if_nonfinite and not bool(torch.isfinite(total)):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite, so it cannot be clipped")
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        live = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if live:
            torch._foreach_mul_(live, coef.to(live[0].device))
        self._clip = coef if self._clip is None else self._clip * coef
        return total

    # -- step ------------------------------------------------------------------------------------
    def _pre_step(self, optimizer, args, kwargs) -> None:
        """Refuse an incomplete accumulation, and apply ``nonfinite`` to the pending gradients, before any state changes."""
        for key, p in self._param.items():
            # a gradient set by hand (no backward pass seen, e.g. torch.distributed.checkpoint's zero-gradient
            # step that creates the state) takes the ordinary path; a partial accumulation is a mistake
            if p.grad is not None and self._passes.get(key, 0) > 0:
                raise UserError(f"per-layer mode: optimizer.step() after {self._passes.get(key, 0)} of "
                                f"accumulation_steps={self.accumulation_steps} backward passes of a parameter")
        keys = list(self._pending)
        items = [self._pending[k] for k in keys]
        policies = [optimizer.param_groups[it.group]["nonfinite"] for it in items]
        kept, _ = checks.apply_policy(type(optimizer).__name__, items, policies)   # raises before any change
        kept_ids = {id(it) for it in kept}
        self._skip = {k for k, it in zip(keys, items) if id(it) not in kept_ids}

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs) -> None:
        """Steps 3–5 (and the commit of a new basis) of every pending matrix, with the lr and c of now."""
        opt = self.optimizer
        d = opt.diagnostics
        for key, value in self._diagnostics.items():          # in_backward mode's notes
            d[key] = {**d.get(key, {}), **value} if isinstance(value, dict) else d.get(key, 0) + value
        d["skipped_nonfinite"] = d.get("skipped_nonfinite", 0) + len(self._skip)
        c = self._clip
        items = []
        for key, it in self._pending.items():
            if key in self._skip:
                continue
            it.plan = opt.resolve(opt.param_groups[it.group], tuple(it.param.shape))[1]   # the lr of now
            if c is not None:
                it.G_hat.mul_(c.to(it.G_hat.device))
            items.append(it)
        try:
            opt.run(items, prepared=True)
        finally:
            self.discard()

    # -- housekeeping ----------------------------------------------------------------------------
    def discard(self) -> None:
        """Drop what backward left for ``step()`` (as ``zero_grad`` drops gradients in the ordinary mode)."""
        self._pending.clear()
        self._freed_norms.clear()
        self._skip = set()
        self._clip = None
        self._diagnostics = {}

    def pending_bytes(self) -> int:
        """Bytes kept from backward for ``step()`` now (deferred mode: Ĝ, fields, new bases, first-step states)."""
        return sum(kept_bytes(it) for it in self._pending.values())

    def remove(self) -> None:
        """Remove the hooks: the optimizer is back to the ordinary mode (pending updates are dropped)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.discard()
