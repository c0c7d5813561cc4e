"""The optimizer shell: validate groups, own the state, call the pure steps.

:class:`SubspaceOptimizer` runs, for each parameter with a gradient, either

* the **full-rank path** (no ``rank`` in its group, or not 2-D): ``U = inner(G)``,
  ``W ← (1 − lr·λ)W + lr·U``; or
* the **projected path**: the subspace step of :mod:`discrete.subspace` with the group's projection
  rule (``projection``: any rule of ``osd_theory.projections.PROJECTIONS`` or a user
  ``path/to/file.py:function``), per matrix or batched (:mod:`discrete.batched`, the default on CUDA).

GaLore, OSD and RSO are presets: a few group defaults over this one class (``preset``). The maths
is in :mod:`discrete.subspace`, :mod:`osd_theory.discrete_steps`, :mod:`osd_theory.kernels` and the
rules; diagnostics are returned in ``self.diagnostics`` (rebuilt by every ``step``), never logged.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from discrete import keys as K
from discrete import sharded
from discrete import state as S
from discrete.batched import bucket_step_
from discrete.inner import INNER, PROJ_OPTIMIZERS, Hyper
from discrete.precision import MATMUL_PRECISION
from discrete.projection import group_rule, rule_kwargs
from discrete.subspace import Plan, init_state, refresh_, subspace_step_
from osd_theory import discrete_steps as ds
from osd_theory.kernels import inverse_norm
from osd_theory.projections import ProjectionRule

# What to do with a NaN/Inf gradient. "raise" and "skip" need one host sync per param group to
# look at the flags; "ignore" checks nothing (torch.optim's own behaviour: the non-finite values
# reach the state), for loops that already guard the gradients (GradScaler, or
# clip_grad_norm_(error_if_nonfinite=True)) and must not stall the GPU queue.
NONFINITE = ("raise", "skip", "ignore")


class SubspaceOptimizer(torch.optim.Optimizer):
    """One optimizer for every (projection rule × inner optimizer); presets set its defaults.

    Symbols → group keys: r ``rank``, T ``update_proj_gap``, GaLore's α ``scale``, side
    ``proj_type``, the rule ``projection`` (+ ``proj_options``), OSD's α ``alpha`` (ε^P = α·ε), λ
    ``pca_lambda``, λ^P ``proj_weight_decay``, Opt_W ``inner``, Opt_P ``proj_optimizer`` (None: the
    rule's own, e.g. Adam for online PCA, the Euler step ``gd`` otherwise), the jump policy ``switch``.
    """

    preset: ClassVar[dict[str, Any]] = {}     # group defaults of a preset (GaLore, OSD, RSO)
    projects: ClassVar[bool] = True
    torch_eps: ClassVar[bool] = True

    def __init__(self, params, lr: float | Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, momentum: float = 0.0, inner: str = "adamw",
                 bias_correction: bool = True, maximize: bool = False, foreach: bool | None = None,
                 nonfinite: str = "raise", **proj_defaults):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, (list, tuple)) else betas, eps=eps,
                        weight_decay=weight_decay, momentum=momentum, inner=inner, bias_correction=bias_correction,
                        maximize=maximize, foreach=foreach, nonfinite=nonfinite)
        K.check_common(defaults)
        unknown = set(proj_defaults) - set(self.proj_keys)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(unknown)}; "
                            f"its projection keys are {sorted(self.proj_keys)}")
        if self.projects:
            defaults.update(self.proj_keys)
            defaults.update(proj_defaults)
        self.diagnostics: dict[str, Any] = {}
        self._stacks: dict = {}          # batched path: stacked state buffers (a cache, not state)
        self._rules: dict = {}           # bound rules per (group options, shape) (a cache, not state)
        super().__init__(params, defaults)
        S.install_dtype_hooks(self)

    # the projected-group keys this optimizer takes, with its defaults (the preset's over the common)
    proj_keys: ClassVar[dict[str, Any]] = {k: default for k, (default, _) in K.PROJ_KEYS.items()}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        unknown = set(cls.preset) - set(K.PROJ_KEYS)
        if unknown:
            raise TypeError(f"{cls.__name__}.preset has keys that are no group keys: {sorted(unknown)}")
        cls.proj_keys = {**{k: d for k, (d, _) in K.PROJ_KEYS.items()}, **cls.preset} if cls.projects else {}

    # -- torch plumbing -----------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Validate a group completely before torch adds it (a failed group never half-exists)."""
        candidate = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        K.check_common(candidate)
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if "rank" in param_group:
            if not self.projects:
                raise ValueError(f"{type(self).__name__} is a full-rank optimizer: remove 'rank' from the param group")
            K.check_projected(candidate)
            sharded.check_projectable(params)          # FSDP1's flat parameters: discrete/sharded.py
            for p in params:
                S.check_rank(candidate["rank"], p)
                if p.ndim == 2:
                    self._bound_rule(candidate, tuple(p.shape))      # the rule and its options must build
        super().add_param_group(param_group)

    def __setstate__(self, state: dict) -> None:
        """Fill keys that older state dicts lack (torch calls this from load_state_dict too)."""
        super().__setstate__(state)
        common = dict(maximize=False, foreach=None, nonfinite="raise", momentum=0.0, inner="adamw",
                      bias_correction=True)
        for group in self.param_groups:
            for key, default in common.items():
                group.setdefault(key, default)
            for key, default in self.proj_keys.items():
                group.setdefault(key, default)
        self.__dict__.setdefault("diagnostics", {})
        self.__dict__.setdefault("_stacks", {})
        self.__dict__.setdefault("_rules", {})
        if not self.__dict__.get("_dtype_hooks"):      # torch's __getstate__ drops hooks (deepcopy, pickle)
            S.install_dtype_hooks(self)

    # -- the rule of a group -----------------------------------------------------------------------
    def _bound_rule(self, group: dict, shape: tuple[int, int]) -> ProjectionRule:
        opts = rule_kwargs(group, None)
        key = (group["projection"], tuple(sorted((k, repr(v)) for k, v in opts.items())), group["proj_type"],
               group["rank"], shape)
        rule = self._rules.get(key)
        if rule is None:
            rule = self._rules[key] = group_rule(group, shape, group["rank"])
        return rule

    def _plan(self, group: dict, rule: ProjectionRule | None) -> Plan:
        hp = self._hyper(group)
        p_opt = hp_p = None
        if rule is not None and rule.smooth:
            p_opt = PROJ_OPTIMIZERS.get(group["proj_optimizer"] or rule.p_optimizer)
            b1, b2 = group["proj_betas"]
            hp_p = Hyper(lr=float(rule.alpha) * hp.lr, beta1=float(b1), beta2=float(b2), eps=float(group["proj_eps"]),
                         momentum=float(group["proj_momentum"]))
        return Plan(hp=hp, inner=INNER.get(group["inner"]), weight_decay=float(group["weight_decay"]),
                    scale=float(group.get("scale", 1.0)), gap=int(group.get("update_proj_gap", 1)),
                    switch=group.get("switch", "keep"), prox=float(group.get("rso_prox", 0.0)),
                    seed=int(group.get("seed", 0)), p_opt=p_opt, hp_p=hp_p,
                    proj_weight_decay=float(group.get("proj_weight_decay", 0.0)),
                    mode=MATMUL_PRECISION.get(group.get("matmul_precision", "highest")))

    def _hyper(self, group: dict) -> Hyper:
        b1, b2 = group["betas"]
        return Hyper(lr=float(group["lr"]), beta1=float(b1), beta2=float(b2), eps=float(group["eps"]),
                     momentum=float(group["momentum"]), bias_correction=bool(group["bias_correction"]),
                     torch_eps=self.torch_eps)

    # -- step -------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.diagnostics = {"skipped_nonfinite": 0}
        index = 0
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            indices = {id(p): index + i for i, p in enumerate(group["params"])}
            index += len(group["params"])
            for p in params:
                S.check_sparse(type(self).__name__, p.grad)
            if sharded.is_sharded(params):     # FSDP2 (DTensor) parameters: discrete/sharded.py steps them
                params = sharded.step_group(self, group, params, indices)
            params = self._filter_finite(params, group)
            self._step_group(group, params, indices)
        return loss

    def _filter_finite(self, params: list[Tensor], group: dict) -> list[Tensor]:
        if group["nonfinite"] == "ignore":
            self._grad_norms = dict(zip(map(id, params), S.grad_norms([p.grad for p in params])))
            return params
        flags, norms = S.finite_flags([p.grad for p in params])
        self._grad_norms = {id(p): n for p, n in zip(params, norms)}   # reused as 1/‖G‖ by the rule's field
        if all(flags):
            return params
        if group["nonfinite"] == "raise":
            raise S.OptimizerInputError(f"{type(self).__name__}: a gradient contains NaN or Inf "
                                        "(pass nonfinite='skip' to skip such parameters, leaving their state untouched)")
        self.diagnostics["skipped_nonfinite"] += flags.count(False)
        return [p for p, ok in zip(params, flags) if ok]

    def _step_group(self, group: dict, params: list[Tensor], indices: dict[int, int]) -> None:
        plan = self._plan(group, None)
        projected = [p for p in params if "rank" in group and p.ndim == 2]
        for p in params:
            if not ("rank" in group and p.ndim == 2):
                self._full_rank_step(p, self._grad(p, group), plan)
        if projected:
            self._projected_steps(group, projected, indices)

    @staticmethod
    def _grad(p: Tensor, group: dict) -> Tensor:
        G = p.grad.float()                                           # float32 work copy (a view for float32)
        return -G if group["maximize"] else G

    def _full_rank_step(self, p: Tensor, grad: Tensor, plan: Plan) -> None:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state.update(plan.inner.init_state(p))
        state["step"] += 1
        U = plan.inner.step(state, grad, plan.hp, int(state["step"]))
        ds.decoupled_weight_decay_(p, plan.hp.lr, plan.weight_decay)
        p.add_(U.to(p.dtype), alpha=plan.hp.lr)

    # -- the projected path ------------------------------------------------------------------------
    def _projected_steps(self, group: dict, params: list[Tensor], indices: dict[int, int]) -> None:
        """Step 1 (refresh) per matrix, then steps 2–5 per matrix or per bucket of same-shape matrices."""
        buckets: dict[tuple, list] = {}
        batched = self._use_batched(group, params)
        norms = getattr(self, "_grad_norms", {})
        plans: dict[tuple, tuple[ProjectionRule, Plan]] = {}       # one rule and plan per shape in this step
        for p in params:
            shape = tuple(p.shape)
            if shape not in plans:
                rule = self._bound_rule(group, shape)
                plans[shape] = (rule, self._plan(group, rule))
            rule, plan = plans[shape]
            G = self._grad(p, group)
            state = self.state[p]
            if not state:
                state.update(init_state(p, rule, plan, indices[id(p)]))
            event, overlap = refresh_(state, G, rule, plan, indices[id(p)])
            if event is not None:
                self._note(event, overlap, indices[id(p)])
            if batched and rule.batchable:
                key = (shape, p.dtype, p.device, int(state["step"]), state.get("subproblem_start", 0))
                buckets.setdefault(key, []).append((p, G, state))
            else:
                inv = inverse_norm_from([p], [G], norms)[0] if rule.smooth else None
                subspace_step_(p, G, state, rule, plan, inv=inv)
        for (shape, *_), items in buckets.items():
            ps, gs, sts = (list(x) for x in zip(*items))
            rule, plan = plans[shape]
            inv = inverse_norm_from(ps, gs, norms) if rule.smooth else None
            bucket_step_(ps, gs, sts, rule, plan, self._stacks, inv=inv)

    def _use_batched(self, group: dict, params: list[Tensor]) -> bool:
        if group["foreach"] is None:                  # as torch: batched by default on CUDA
            return all(p.is_cuda for p in params)
        return bool(group["foreach"])

    def _note(self, event: str | None, overlap: float | None, index: int) -> None:
        d = self.diagnostics
        if event in ("init", "jump"):
            d["refreshes"] = d.get("refreshes", 0) + 1
        elif event == "skipped":
            d["refresh_skipped"] = d.get("refresh_skipped", 0) + 1
        if overlap is not None:
            d.setdefault("overlap", {})[index] = overlap


def inverse_norm_from(params: list[Tensor], grads: list[Tensor], norms: dict[int, Tensor]) -> Tensor:
    """(L, 1, 1) 1/‖Gᵢ‖ (0 for G = 0), from the norms the non-finite check computed when it has them."""
    if all(id(p) in norms for p in params):
        n = torch.stack([norms[id(p)].float() for p in params])[:, None, None]
        return torch.where(n > 0, 1.0 / n, torch.zeros_like(n))
    return torch.stack([inverse_norm(G) for G in grads])
