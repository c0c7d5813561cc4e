"""The optimizer shell: validate groups, own the state, call the pure steps.

:class:`SubspaceOptimizer` runs, for each parameter with a gradient, either

* the **full-rank path** (no ``rank`` in its group, or not 2-D): ``U = inner(G)``,
  ``W ← (1 − lr·λ)W + lr·U``; or
* the **projected path**: the subspace step of :mod:`discrete.subspace` with the group's projection
  rule (``projection``: any rule of ``osd_theory.projections.PROJECTIONS`` or a user
  ``path/to/file.py:function``), run by an executor of :mod:`discrete.step` (batched by default).

GaLore, OSD and RSO are presets: a few group defaults over this one class (``preset``). The maths
is in :mod:`discrete.subspace`, :mod:`osd_theory.discrete_steps`, :mod:`osd_theory.kernels` and the
rules; diagnostics are returned in ``self.diagnostics`` (rebuilt by every ``step``), never logged.
"""
from __future__ import annotations

import difflib
import functools
import warnings
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from discrete import keys as K
from discrete import state as S
from discrete.inner import INNER, Hyper, resolve_inner, resolve_proj_optimizer
from discrete.precision import MATMUL_PRECISION
from discrete.projection import group_rule, rule_kwargs
from discrete.step import checks, sharded
from discrete.step.executors import EXECUTORS
from discrete.step.items import Context, Item
from discrete.subspace import Plan, basis_storage_problem, init_state, inner_states, state_layout, work_grad
from osd_theory.errors import UserError
from osd_theory.projections import ProjectionRule

DEFAULT_BETAS = (0.9, 0.999)     # a group whose inner optimizer takes betas, in an optimizer whose default takes none

# Under torch.compile the step runs eagerly (Dynamo skips it: one graph break). Traced, it was
# silently wrong on torch 2.13: with two same-shaped parameters Dynamo applied one parameter's state
# to the other (step counters 5 and 1 after 3 steps), and inductor on CPU dropped the alpha of
# W.add_(X, alpha=lr). The step is Python-heavy by design (int step counters, the data-dependent
# refresh, per-shape rules), so tracing it would also recompile every step.
COMPILE_NOTE = ("the discrete optimizers' step runs eagerly under torch.compile (one graph break; "
                "docs/optimizers.md, 'What is supported')")


_EAGER_BUILDS: list[Callable[[], None]] = []       # run when an optimizer is constructed (below)


def eager_under_compile(fn: Callable) -> Callable:
    """``fn`` and everything it calls run eagerly when a compiled function reaches them.

    The ``torch.compiler.disable`` wrapper is built when the first optimizer is constructed, not
    at import: building it imports torch._dynamo and sympy, which ``import discrete`` must not
    (tests/test_imports.py); torch.optim's own constructor imports them anyway. Built before any
    call, the wrapper is what Dynamo meets, so the graph break carries :data:`COMPILE_NOTE`.
    """
    disabled: list[Callable] = []

    def build() -> None:
        if not disabled:
            try:
                disabled.append(torch.compiler.disable(fn, recursive=True, reason=COMPILE_NOTE))
            except TypeError:                  # torch < 2.7: no reason=
                disabled.append(torch.compiler.disable(fn, recursive=True))

    @functools.wraps(fn)
    def eager(*args, **kwargs):
        build()
        return disabled[0](*args, **kwargs)

    _EAGER_BUILDS.append(build)
    return eager


class SubspaceOptimizer(torch.optim.Optimizer):
    """One optimizer for every (projection rule × inner optimizer); presets set its defaults.

    Symbols → group keys: r ``rank``, T ``update_proj_gap``, GaLore's α ``scale``, side
    ``proj_type``, the rule ``projection`` (+ ``proj_options``), OSD's α ``alpha`` (ε^P = α·ε), λ
    ``pca_lambda``, λ^P ``proj_weight_decay``, Opt_W ``inner``, Opt_P ``proj_optimizer`` (None: the
    rule's own, e.g. Adam for online PCA, the Euler step ``gd`` otherwise), the jump policy ``switch``.
    """

    preset: ClassVar[dict[str, Any]] = {}     # group defaults of a preset (GaLore, OSD, RSO)
    projects: ClassVar[bool] = True
    eps_placement: ClassVar[str] = "torch"   # the default of the group key (GaLore: "hf", as galore-torch)

    def __init__(self, params, lr: float | Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, momentum: float = 0.0, inner: str = "adamw",
                 bias_correction: bool = True, maximize: bool = False, foreach: bool | None = None,
                 nonfinite: str = "raise", correct_bias: bool | None = None, no_deprecation_warning: bool = False,
                 eps_placement: str | None = None, state_dtype: str = "float32", stochastic_rounding: bool = False,
                 **proj_defaults):
        # galore-torch's GaLoreAdamW (HF's old AdamW) keywords: correct_bias is bias_correction; the
        # deprecation warning that no_deprecation_warning silences does not exist here.
        S.check_bool("no_deprecation_warning", no_deprecation_warning)
        if correct_bias is not None:
            S.check_bool("correct_bias", correct_bias)
            if correct_bias and not bias_correction:
                raise ValueError("correct_bias=True contradicts bias_correction=False; pass one of them")
            bias_correction = correct_bias
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, (list, tuple)) else betas, eps=eps,
                        weight_decay=weight_decay, momentum=momentum, inner=inner, bias_correction=bias_correction,
                        maximize=maximize, foreach=foreach, nonfinite=nonfinite,
                        eps_placement=type(self).eps_placement if eps_placement is None else eps_placement,
                        state_dtype=state_dtype, stochastic_rounding=stochastic_rounding)
        K.check_common(defaults)
        if not INNER.get(inner).uses_betas:
            # as torch.optim.SGD: no betas, so schedulers that cycle momentum (OneCycleLR, CyclicLR)
            # cycle `momentum`, the key the step reads, not an unused beta1
            del defaults["betas"]
        unknown = sorted(set(proj_defaults) - set(self.proj_keys))
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(self.proj_keys), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {unknown}{hint}; "
                            f"its projection keys are {sorted(self.proj_keys)}")
        if self.projects:
            defaults.update(self.proj_keys)
            defaults.update(proj_defaults)
        self.diagnostics: dict[str, Any] = {}
        self._stacks: dict = {}          # batched path: stacked state buffers (a cache, not state)
        self._rules: dict = {}           # bound rules per (group options, shape) (a cache, not state)
        self._warned_full_rank = False
        for build in _EAGER_BUILDS:
            build()
        super().__init__(params, defaults)

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
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else params
        if not isinstance(params, (set, Tensor)):
            param_group["params"] = params = list(params)   # a generator is read once, here (torch errors on sets)
        candidate = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        # named parameters come as (name, tensor); anything else that is no tensor is torch's TypeError
        tensors = [x[1] if isinstance(x, tuple) and len(x) == 2 else x for x in params]
        self._check_group(candidate, [t for t in tensors if isinstance(t, Tensor)])
        if "rank" in candidate:
            sharded.check_projectable([t for t in tensors if isinstance(t, Tensor)])   # FSDP1's flat parameters
        if "betas" not in candidate and INNER.get(candidate["inner"]).uses_betas:
            param_group["betas"] = DEFAULT_BETAS
        super().add_param_group(param_group)

    def _check_group(self, group: dict, params: list[Tensor]) -> None:
        """Every value and key of a group (all defaults filled in) against its parameters; raises ValueError."""
        name = type(self).__name__
        if "rank" in group and not self.projects:
            raise ValueError(f"{name} is a full-rank optimizer: remove 'rank' from the param group")
        known = set(self.defaults) | set(K.COMMON_KEYS) | ({"rank", *K.PROJ_KEYS} if self.projects else set())
        K.check_known(name, group, known)
        K.check_common(group)
        if self.projects:
            K.check_projected(group)
        if getattr(INNER.get(group["inner"]), "matrices_only", False):
            bad = [tuple(p.shape) for p in params if p.ndim != 2]
            if bad:
                raise ValueError(f"{name}: inner optimizer {group['inner']!r} steps 2-D matrices only, but this group "
                                 f"has a parameter of shape {bad[0]}; give it a group with another inner (e.g. "
                                 "inner='adamw')")
        if "rank" in group:
            if group.get("proj_dtype", "float32") != "float32" and any(p.dtype == torch.float64 for p in params):
                raise ValueError(f"{name}: proj_dtype={group['proj_dtype']!r} keeps P in low precision, but this group "
                                 "has float64 parameters (their P is float64); use proj_dtype='float32' for them")
            for p in params:
                S.check_rank(group["rank"], p, clip=group["clip_rank"])
                if p.ndim == 2:
                    self._bound_rule(group, tuple(p.shape))      # the rule and its options must build

    def _older_defaults(self) -> dict:
        """Values for the keys that state dicts saved by older versions lack."""
        return {**dict(maximize=False, foreach=None, nonfinite="raise", momentum=0.0, inner="adamw",
                       bias_correction=True, eps_placement=type(self).eps_placement, state_dtype="float32",
                       stochastic_rounding=False), **self.proj_keys}

    def __setstate__(self, state: dict) -> None:
        """Fill keys that older state dicts lack (torch calls this from load_state_dict too)."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, default in self._older_defaults().items():
                group.setdefault(key, default)
        self.__dict__.setdefault("diagnostics", {})
        self.__dict__.setdefault("_stacks", {})
        self.__dict__.setdefault("_rules", {})
        self.__dict__.setdefault("_warned_full_rank", False)

    @eager_under_compile
    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, with the loaded dict checked before anything changes.

        After the user's pre-hooks (which may edit the dict, as with torch.optim) every group is
        validated as :meth:`add_param_group` does and every parameter's state is checked against
        what this optimizer needs (:func:`discrete.subspace.state_layout`): a bad dict raises a
        ValueError and nothing is loaded. Each state tensor keeps its dtype (float32, or the codes and
        scales of a low-precision ``state_dtype``; :func:`discrete.state.keep_dtype_load_hooks`).
        """
        keep_pre, keep_post = S.keep_dtype_load_hooks()

        def check_then_keep(optimizer, sd):
            sd = S.upgrade_sgd_state(sd)
            self._check_state_dict(sd)
            keep_pre(optimizer, sd)
            return sd

        # registered for this load only: ours runs after every user pre-hook and before every user post-hook
        handles = [self.register_load_state_dict_pre_hook(check_then_keep),
                   self.register_load_state_dict_post_hook(keep_post, prepend=True)]
        try:
            return super().load_state_dict(state_dict)
        finally:
            for handle in handles:
                handle.remove()

    def _check_state_dict(self, state_dict: dict) -> None:
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, self.param_groups)):
            return                                            # torch's own error follows
        where = f"{type(self).__name__}.load_state_dict"
        saved_state = state_dict["state"]
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            candidate = {**self._older_defaults(), **{k: v for k, v in saved.items() if k != "params"}}
            try:
                self._check_group(candidate, group["params"])
            except ValueError as e:
                raise ValueError(f"{where}: param group {i} of the loaded dict: {e}; nothing was loaded") from None
            for pid, p in zip(saved["params"], group["params"]):
                if saved_state.get(pid):
                    problem = self._state_problem(candidate, p, saved_state[pid])
                    if problem:
                        raise ValueError(f"{where}: the state of parameter {pid} (group {i}) {problem}; "
                                         "nothing was loaded")

    def _state_layout(self, group: dict, p: Tensor) -> dict[str, Any]:
        """Keys -> tensor shape (tuple) or scalar type of the state ``p`` gets in ``group``."""
        if "rank" in group and p.ndim == 2:
            rule = self._bound_rule(group, tuple(p.shape))
            return state_layout(tuple(p.shape), rule, self._plan(group, rule))
        inner = resolve_inner(group["inner"], group.get("state_dtype", "float32"))
        return {"step": (), **{k: shape for k, (shape, _) in inner.layout(tuple(p.shape)).items()}}

    def _inner_states(self, group: dict, p: Tensor) -> list[tuple[Any, tuple, str]]:
        """(inner rule, shape it steps, key prefix) for each inner optimizer keeping state for ``p`` in ``group``."""
        if "rank" in group and p.ndim == 2:
            rule = self._bound_rule(group, tuple(p.shape))
            return inner_states(tuple(p.shape), rule, self._plan(group, rule))
        return [(resolve_inner(group["inner"], group.get("state_dtype", "float32")), tuple(p.shape), "")]

    def _state_problem(self, group: dict, p: Tensor, state: dict) -> str | None:
        layout = self._state_layout(group, p)
        for inner, shape, prefix in self._inner_states(group, p):   # a state of another state_dtype: say so first
            problem = inner.check_state(state, shape, prefix)
            if problem and "saved with state_dtype" in problem:
                return problem
        missing = sorted(set(layout) - set(state))
        if missing:
            return (f"lacks {missing}, which {type(self).__name__} needs with this group's keys (was it saved by "
                    "another optimizer class, or with another inner optimizer or projection rule?)")
        for key, kind in layout.items():
            value = state[key]
            if isinstance(kind, tuple) and not (torch.is_tensor(value) and tuple(value.shape) == kind):
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                return f"has {key!r} of shape {shape}, expected {kind} (another rank, side or parameter shape?)"
            if not isinstance(kind, tuple) and not isinstance(value, kind):
                return f"has {key!r} = {value!r}, expected a {kind.__name__}"
        if "proj_side" in layout and state["proj_side"] != self._bound_rule(group, tuple(p.shape)).side_:
            return f"has proj_side {state['proj_side']}, but this group's proj_type projects the other side"
        if "proj" in layout:
            problem = basis_storage_problem(state["proj"], group.get("proj_dtype", "float32"))
            if problem:
                return problem
        for inner, shape, prefix in self._inner_states(group, p):      # dtypes: the inner rule owns its storage
            problem = inner.check_state(state, shape, prefix)
            if problem:
                return problem
        return None

    # -- the rule of a group -----------------------------------------------------------------------
    def _bound_rule(self, group: dict, shape: tuple[int, int]) -> ProjectionRule:
        opts = rule_kwargs(group, None)
        rank = S.matrix_rank(group, shape)
        key = (group["projection"], tuple(sorted((k, repr(v)) for k, v in opts.items())), group["proj_type"],
               rank, shape)
        rule = self._rules.get(key)
        if rule is None:
            rule = self._rules[key] = group_rule(group, shape, rank)
        return rule

    def _plan(self, group: dict, rule: ProjectionRule | None) -> Plan:
        hp = self._hyper(group)
        p_opt = hp_p = None
        if rule is not None and rule.smooth:
            p_opt = resolve_proj_optimizer(group["proj_optimizer"] or rule.p_optimizer,
                                           group.get("proj_state_dtype", "float32"))
            b1, b2 = group["proj_betas"]
            lr_w = hp.lr if group.get("proj_lr", "follow") == "follow" else float(group.get("initial_lr", group["lr"]))
            hp_p = Hyper(lr=float(rule.alpha) * lr_w, beta1=float(b1), beta2=float(b2), eps=float(group["proj_eps"]),
                         momentum=float(group["proj_momentum"]))
        return Plan(hp=hp, inner=resolve_inner(group["inner"], group.get("state_dtype", "float32")),
                    weight_decay=float(group["weight_decay"]),
                    scale=float(group.get("scale", 1.0)), gap=int(group.get("update_proj_gap", 1)),
                    switch=group.get("switch", "keep"), prox=float(group.get("rso_prox", 0.0)),
                    seed=int(group.get("seed", 0)), p_opt=p_opt, hp_p=hp_p,
                    proj_weight_decay=float(group.get("proj_weight_decay", 0.0)),
                    mode=MATMUL_PRECISION.get(group.get("matmul_precision", "highest")),
                    stochastic_rounding=bool(group.get("stochastic_rounding", False)),
                    proj_dtype=group.get("proj_dtype", "float32"))

    def _hyper(self, group: dict) -> Hyper:
        b1, b2 = group.get("betas", DEFAULT_BETAS)
        extra = tuple((k, tuple(group[k]) if isinstance(group[k], list) else group[k])
                      for k in INNER.get(group["inner"]).options if k in group)
        return Hyper(lr=float(group["lr"]), beta1=float(b1), beta2=float(b2), eps=float(group["eps"]), extra=extra,
                     momentum=float(group["momentum"]), bias_correction=bool(group["bias_correction"]),
                     torch_eps=group.get("eps_placement", type(self).eps_placement) == "torch")

    # -- the step: build items, check, prepare, commit -------------------------------------------------
    def resolve(self, group: dict, shape: tuple[int, ...]) -> tuple[ProjectionRule | None, Plan]:
        """The bound rule (None: the full-rank path) and the :class:`Plan` of a parameter of ``shape`` in ``group``."""
        if "rank" in group and len(shape) == 2:
            rule = self._bound_rule(group, tuple(shape))
            return rule, self._plan(group, rule)
        return None, self._plan(group, None)

    def item(self, p: Tensor, group: dict, index: int, group_index: int, k: int | None = None,
             grad: Tensor | None = None, resolved: dict | None = None) -> Item:
        """The :class:`~discrete.step.items.Item` of parameter ``p`` for this step (pure: a first step's state is
        created but not installed). ``k`` (steps taken) is read from the state when not given. ``resolved``: a
        dict the caller keeps for one step, (group index, shape) -> (rule, plan), so that a group's plan is
        resolved once per step and shape, not once per parameter."""
        key = (group_index, tuple(p.shape))
        if resolved is not None and key in resolved:
            rule, plan = resolved[key]
        else:
            rule, plan = self.resolve(group, tuple(p.shape))
            if resolved is not None:
                resolved[key] = (rule, plan)
        state = self.state.get(p) or {}
        fresh = not state
        g = p.grad if grad is None else grad
        rows = None
        if sharded.is_dtensor(p):
            rows = sharded.rows_of(p)
            if not sharded.is_dtensor(g):
                raise UserError("an FSDP2 (DTensor) parameter has a plain-tensor gradient: not supported")
            g = g.to_local()
        if fresh:
            if rule is None:
                state = sharded.full_rank_state(p, plan.inner) if rows is not None else \
                    {"step": torch.zeros((), dtype=torch.float32), **plan.inner.init_state(work_grad(g, False))}
            else:
                state = init_state(p, rule, plan, index)
                if rows is not None:
                    state = sharded.sharded_state(state, rows)
            k = 0
        elif k is None:
            k = int(state["step"])
        return Item(param=p, grad=work_grad(g, group["maximize"]), state=state, plan=plan, index=index,
                    group=group_index, rule=rule, k=k, fresh=fresh, rows=rows)

    def executor_of(self, it: Item) -> str:
        """"sharded" for FSDP2 parameters; "single" with ``foreach=False`` or a rule written per matrix; else "batched"."""
        if it.rows is not None:
            return "sharded"
        if self.param_groups[it.group]["foreach"] is False or (it.rule is not None and not it.rule.batchable):
            return "single"
        return "batched"

    def _items(self) -> list[Item]:
        """The items of every parameter with a gradient (k read in one go: one host read for all step counters)."""
        params = [(p, g, gi) for gi, g in enumerate(self.param_groups) for p in g["params"]]
        for i, (p, _, _) in enumerate(params):
            S.check_materialised(type(self).__name__, i, p)
        live = [(i, p, group, gi) for i, (p, group, gi) in enumerate(params) if p.grad is not None]
        for _, p, _, _ in live:
            S.check_sparse(type(self).__name__, p.grad)
        old = [p for _, p, _, _ in live if self.state.get(p)]
        ks = dict(zip(map(id, old), read_steps([self.state[p]["step"] for p in old])))
        resolved: dict = {}
        return [self.item(p, group, i, gi, k=ks.get(id(p)), resolved=resolved) for i, p, group, gi in live]

    def check(self, items: list[Item]) -> list[Item]:
        """The items that pass every group's non-finite policy (raises before anything changed); fills ‖G‖."""
        policies = [self.param_groups[it.group]["nonfinite"] for it in items]
        plain = [it for it, pol in zip(items, policies) if it.rows is None and checks.needs_norm(it, pol)]
        dist_ = [it for it, pol in zip(items, policies) if it.rows is not None]
        checks.compute_norms(plain)
        checks.compute_norms(dist_, reduce_sq=sharded.reduce_squared_norms)
        checks.check_storage(items)
        kept, skipped = checks.apply_policy(type(self).__name__, items, policies)
        self.diagnostics["skipped_nonfinite"] += skipped
        return kept

    def run(self, items: list[Item], prepared: bool = False) -> None:
        """Prepare every item (unless ``prepared``), then install first-step states and commit; atomic.

        Every executor prepares before any commits, so a rejection anywhere leaves everything as it was.
        """
        ctx = Context(type(self).__name__, self.diagnostics, self._stacks)
        by_executor: dict[str, list[Item]] = {}
        for it in items:
            by_executor.setdefault(self.executor_of(it), []).append(it)
        work = [(EXECUTORS.get(name), its) for name, its in by_executor.items()]
        work = [(ex, ex.prepare(its, ctx, prepared=prepared)) for ex, its in work]
        for it in items:
            if it.fresh:
                self.state[it.param] = it.state
                it.fresh = False
        for ex, plan in work:
            ex.commit(plan, ctx)

    @eager_under_compile
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """One optimizer step: items → checks → every executor's prepare → commit (atomic; module docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.diagnostics = {"skipped_nonfinite": 0}
        self._warn_if_nothing_projected()
        self.run(self.check(self._items()))
        return loss

    def _warn_if_nothing_projected(self) -> None:
        # HF Trainer's optimizer_cls_and_kwargs=(OnlineSubspaceDescent, {...}) builds groups without a
        # rank: it would silently train full-rank AdamW.
        if self.projects and not self._warned_full_rank and not any("rank" in g for g in self.param_groups):
            self._warned_full_rank = True
            warnings.warn(f"{type(self).__name__}: no param group has a 'rank', so every parameter takes the full-rank "
                          "path (no memory saving); give the matrices to project a group with a 'rank' "
                          "(discrete.groups.param_groups(model, rank=...) builds the groups)",
                          UserWarning, stacklevel=4)


def read_steps(steps: list[Tensor]) -> list[int]:
    """The step counters as ints with one host read (they are 0-d CPU tensors; one stack, one tolist)."""
    if not steps:
        return []
    try:
        return [int(x) for x in torch.stack(steps).tolist()]
    except RuntimeError:                                    # counters on several devices (a hand-edited state)
        return [int(x) for x in steps]
