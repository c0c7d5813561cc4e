"""The shared optimizer shell: validate, create state, call the pure steps.

:class:`SubspaceOptimizer` runs, for each parameter with a gradient, either

* the **full-rank path** (no ``rank`` in its group, or not 2-D): ``U = inner(G)``,
  ``W ← (1 − lr·λ)W + lr·U``; or
* the **projected path**, written once (THEORY.md §4.2 step 1, §5):

      (subclass) refresh P if due         GaLore: SVD every T steps; RSO: resample
      Ĝ = project(P, G)                   Ĝ = PᵀG (LEFT) or GP (RIGHT)
      U = inner(Ĝ)                        e.g. the Adam Euler step (osd_theory.discrete_steps)
      W ← (1 − lr·λ)W + lr·scale·back_project(P, U)
      (subclass) after the update         OSD: one P-optimizer step on the online-PCA loss

Subclasses only say how P is created and changed (:meth:`_init_proj`, :meth:`_before_project`,
:meth:`_after_update`) and which extra group keys they take. The maths is in
:mod:`osd_theory.discrete_steps` and :mod:`osd_theory.kernels`; diagnostics are returned in
``self.diagnostics`` (a dict rebuilt by every ``step``), never logged.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from discrete import state as S
from discrete.inner import INNER, Hyper
from osd_theory import discrete_steps as ds
from osd_theory.kernels import LEFT, back_project, project, random_basis

# What to do with a NaN/Inf gradient. "raise" and "skip" need one host sync per param group to
# look at the flags; "ignore" checks nothing (torch.optim's own behaviour: the non-finite values
# reach the state), for loops that already guard the gradients (GradScaler, or
# clip_grad_norm_(error_if_nonfinite=True)) and must not stall the GPU queue.
NONFINITE = ("raise", "skip", "ignore")


class SubspaceOptimizer(torch.optim.Optimizer):
    """Base class (see module docstring). Not registered; use its subclasses."""

    # extra keys of projected groups: name -> (default, validator(value, group) or None)
    proj_keys: ClassVar[dict[str, tuple[Any, Callable | None]]] = {}
    projects: ClassVar[bool] = True
    torch_eps: ClassVar[bool] = True

    def __init__(self, params, lr: float | Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, momentum: float = 0.0, inner: str = "adamw",
                 bias_correction: bool = True, maximize: bool = False, foreach: bool | None = None,
                 nonfinite: str = "raise", **proj_defaults):
        S.check_lr(lr)
        S.check_betas(betas)
        S.check_nonneg("epsilon", eps)
        S.check_nonneg("weight_decay", weight_decay)
        S.check_momentum(momentum)
        S.check_choice(INNER, inner)
        if foreach is not None and not isinstance(foreach, bool):
            raise ValueError(f"Invalid foreach value: {foreach!r}; expected None, True or False")
        if nonfinite not in NONFINITE:
            raise ValueError(f"Unknown nonfinite policy {nonfinite!r}; expected one of {list(NONFINITE)}")
        unknown = set(proj_defaults) - set(self.proj_keys)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(unknown)}; "
                            f"its projection keys are {sorted(self.proj_keys)}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, momentum=momentum, inner=inner,
                        bias_correction=bias_correction, maximize=maximize, foreach=foreach, nonfinite=nonfinite)
        for key, (default, _) in self.proj_keys.items():
            defaults[key] = proj_defaults.get(key, default)
        self.diagnostics: dict[str, Any] = {}
        self._stacks: dict = {}          # fused path: stacked state buffers (a cache, not state)
        super().__init__(params, defaults)
        S.install_dtype_hooks(self)

    # -- torch plumbing -----------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        S.check_lr(group["lr"])
        S.check_betas(group["betas"])
        S.check_nonneg("epsilon", group["eps"])
        S.check_nonneg("weight_decay", group["weight_decay"])
        S.check_momentum(group["momentum"])
        S.check_choice(INNER, group["inner"])
        if "rank" in group:
            if not self.projects:
                raise ValueError(f"{type(self).__name__} is a full-rank optimizer: remove 'rank' from the param group")
            for p in group["params"]:
                S.check_rank(group["rank"], p)
            for key, (_, check) in self.proj_keys.items():
                if check is not None:
                    check(group[key], group)

    def __setstate__(self, state: dict) -> None:
        """Fill keys that older state dicts lack (torch calls this from load_state_dict too)."""
        super().__setstate__(state)
        common = dict(maximize=False, foreach=None, nonfinite="raise", momentum=0.0, inner="adamw",
                      bias_correction=True)
        for group in self.param_groups:
            for key, default in common.items():
                group.setdefault(key, default)
            for key, (default, _) in self.proj_keys.items():
                group.setdefault(key, default)
        self.__dict__.setdefault("diagnostics", {})
        self.__dict__.setdefault("_stacks", {})
        if not self.__dict__.get("_dtype_hooks"):      # torch's __getstate__ drops hooks (deepcopy, pickle)
            S.install_dtype_hooks(self)

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
            params = self._filter_finite(params, group)
            self._step_group(group, params, indices)
        return loss

    def _filter_finite(self, params: list[Tensor], group: dict) -> list[Tensor]:
        if group["nonfinite"] == "ignore":
            self._grad_norms = dict(zip(map(id, params), S.grad_norms([p.grad for p in params])))
            return params
        flags, norms = S.finite_flags([p.grad for p in params])
        self._grad_norms = {id(p): n for p, n in zip(params, norms)}   # reused by the fused OSD P step
        if all(flags):
            return params
        if group["nonfinite"] == "raise":
            raise S.OptimizerInputError(f"{type(self).__name__}: a gradient contains NaN or Inf "
                                        "(pass nonfinite='skip' to skip such parameters, leaving their state untouched)")
        self.diagnostics["skipped_nonfinite"] += flags.count(False)
        return [p for p, ok in zip(params, flags) if ok]

    def _hyper(self, group: dict) -> Hyper:
        b1, b2 = group["betas"]
        return Hyper(lr=float(group["lr"]), beta1=float(b1), beta2=float(b2), eps=float(group["eps"]),
                     momentum=float(group["momentum"]), bias_correction=bool(group["bias_correction"]),
                     torch_eps=self.torch_eps)

    def _step_group(self, group: dict, params: list[Tensor], indices: dict[int, int]) -> None:
        hp = self._hyper(group)
        inner = INNER.get(group["inner"])
        if self._use_fused(group, params):
            params = self._fused_step(group, params, hp, inner, indices)
        for p in params:
            grad = -p.grad if group["maximize"] else p.grad
            if "rank" in group and p.ndim == 2:
                self._projected_step(p, grad, group, hp, inner, indices[id(p)])
            else:
                self._full_rank_step(p, grad, group, hp, inner)

    def _full_rank_step(self, p: Tensor, grad: Tensor, group: dict, hp: Hyper, inner) -> None:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state.update(inner.init_state(p))
        state["step"] += 1
        U = inner.step(state, grad.float(), hp, int(state["step"]))
        ds.decoupled_weight_decay_(p, hp.lr, group["weight_decay"])
        p.add_(U.to(p.dtype), alpha=hp.lr)

    # -- the batched path (discrete.fused): same equations, buckets of same-shape matrices ---------
    def _use_fused(self, group: dict, params: list[Tensor]) -> bool:
        if "rank" not in group or not params or not self._fused_ok(group):
            return False
        if group["foreach"] is None:                  # as torch: batched by default on CUDA
            return all(p.is_cuda for p in params)
        return group["foreach"]

    def _fused_ok(self, group: dict) -> bool:
        return False

    def _pca_hyper(self, group: dict, hp: Hyper):
        return None

    def _fused_step(self, group: dict, params: list[Tensor], hp: Hyper, inner, indices: dict[int, int]) -> list[Tensor]:
        """Step every ready projected matrix in buckets; return the parameters left for the per-matrix path."""
        from discrete.fused import subspace_adam_bucket
        rest, buckets = [], {}
        for p in params:
            st = self.state[p]
            if p.ndim != 2 or not st or st["last_refresh_step"] < 0:
                rest.append(p)
                continue
            G = p.grad.float()
            G = -G if group["maximize"] else G
            self._before_project(st, G, group, hp, inner, indices[id(p)])
            key = (tuple(p.shape), st["proj_side"], p.dtype, p.device, int(st["step"]))
            buckets.setdefault(key, []).append((p, G, st))
        norms = getattr(self, "_grad_norms", {})
        for (shape, side, _, _, step), items in buckets.items():
            ps, gs, sts = (list(x) for x in zip(*items))
            ns = [norms[id(p)] for p in ps] if all(id(p) in norms for p in ps) else None
            subspace_adam_bucket(ps, gs, sts, self._stacks, norms=ns, side=side, lr=hp.lr, beta1=hp.beta1, beta2=hp.beta2,
                                 eps=hp.eps, weight_decay=group["weight_decay"], scale=group["scale"], step=step + 1,
                                 bias_correction=hp.bias_correction, torch_eps=hp.torch_eps,
                                 pca=self._pca_hyper(group, hp), precision=group.get("matmul_precision", "highest"))
        return rest

    # -- the projected path (written once) --------------------------------------------------
    def _projected_step(self, p: Tensor, grad: Tensor, group: dict, hp: Hyper, inner, index: int) -> None:
        state = self.state[p]
        G = grad.float()                                             # (m, n), float32 work copy
        if not state:
            side = S.side_of(group["proj_type"], p.shape)
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["proj"] = self._placeholder_basis(p, group, side, index)
            state["proj_side"] = side
            state["last_refresh_step"] = -1
            self._init_proj(state, G, group, index)
            m, n = p.shape
            g_hat_shape = (group["rank"], n) if side == LEFT else (m, group["rank"])
            state.update(inner.init_state(torch.empty(g_hat_shape, device=p.device)))
        self._before_project(state, G, group, hp, inner, index)
        P, side = state["proj"], state["proj_side"]
        state["step"] += 1
        G_hat = project(P, G, side)                                  # Ĝ = PᵀG or GP
        U = inner.step(state, self._subspace_grad(state, G_hat, group), hp, self._bias_step(state))
        ds.decoupled_weight_decay_(p, hp.lr, group["weight_decay"])
        update = ds.galore_scale(back_project(P, U, side), group["scale"])   # scale · P U
        p.add_(update.to(p.dtype), alpha=hp.lr)
        self._after_update(state, G, G_hat, U, group, hp)

    def _placeholder_basis(self, p: Tensor, group: dict, side: int, index: int) -> Tensor:
        """A seeded Haar basis, used until a non-zero gradient gives a real one (never SVD of zeros)."""
        gen = torch.Generator().manual_seed(1_000_003 * int(group.get("seed", 0)) + index)
        P = random_basis(S.basis_rows(p.shape, side), group["rank"], generator=gen, dtype=torch.float64)
        return P.to(device=p.device, dtype=torch.float32)

    def _subspace_grad(self, state: dict, G_hat: Tensor, group: dict) -> Tensor:
        return G_hat

    def _bias_step(self, state: dict) -> int:
        """The step count t of the inner optimizer's bias correction (RSO restarts it per subproblem)."""
        return int(state["step"])

    # -- hooks for subclasses ---------------------------------------------------------------
    def _init_proj(self, state: dict, G: Tensor, group: dict, index: int) -> None:
        """Replace the placeholder P on the first step, if the method builds P from G."""

    def _before_project(self, state: dict, G: Tensor, group: dict, hp: Hyper, inner, index: int) -> None:
        """Refresh P before it is used (GaLore, RSO)."""

    def _after_update(self, state: dict, G: Tensor, G_hat: Tensor, U: Tensor, group: dict, hp: Hyper) -> None:
        """Change P after the weight update (OSD's P step)."""
