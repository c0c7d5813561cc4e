"""Everything a step can reject, decided before anything mutates (the one place of the non-finite policy).

A step is atomic: the optimizer builds its items, these checks run (sparse and non-finite gradients under
each group's ``nonfinite`` policy), every executor's ``prepare`` runs (the rules' outputs: a user rule that
raises, calls ``sys.exit``, or returns the wrong type, shape or dtype or a non-finite tensor is caught here,
see :func:`guarded`), and only then does any executor commit. Under FSDP2 the processes agree first
(:func:`agree`): a failure on one process raises on all of them, with no state changed anywhere.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import Tensor

from discrete.state import OptimizerInputError, grad_norms
from discrete.step.items import Item
from osd_theory.errors import UserError
from osd_theory.projections import ProjectionRule
from osd_theory.projections.rules import BUILTIN_RULES

T = TypeVar("T")

# What to do with a NaN/Inf gradient. "raise" and "skip" need one host read per step for the flags of all
# groups together; "ignore" checks nothing (torch.optim's own behaviour: the non-finite values reach the
# state), for loops that already guard the gradients (GradScaler, or clip_grad_norm_(error_if_nonfinite=True))
# and must not stall the GPU queue.
NONFINITE = ("raise", "skip", "ignore")

# Every message of a rejected step ends so: the caller may retry after fixing the input.
UNCHANGED = "nothing was stepped (every parameter and state tensor is as before)"


class StepRejected(UserError):
    """A step refused before anything changed (a user rule failed or returned a bad value)."""


# -- gradients -------------------------------------------------------------------------------------
def needs_norm(it: Item, policy: str) -> bool:
    """The norm serves the non-finite check and the smooth rules' 1/‖G‖."""
    return policy != "ignore" or (it.rule is not None and it.rule.smooth)


def compute_norms(items: list[Item], reduce_sq: Callable[[list[Item], Tensor], Tensor] | None = None) -> None:
    """item.norm = ‖G‖ for the items given, one ``_foreach_norm`` per device and dtype; no host sync.

    ``reduce_sq`` (FSDP2) sums the squared local norms over the processes (one all-reduce).
    """
    if not items:
        return
    norms = grad_norms([it.grad for it in items])
    if reduce_sq is not None:
        sq = reduce_sq(items, stacked_norms(norms) ** 2)
        norms = list(sq.sqrt().unbind(0))
    for it, n in zip(items, norms):
        it.norm = n


def stacked_norms(norms: list[Tensor]) -> Tensor:
    """The norms as one float tensor on the first one's device (no cast op where none is needed)."""
    dev, dt = norms[0].device, norms[0].dtype
    if any(n.device != dev or n.dtype != dt for n in norms) or dt not in (torch.float32, torch.float64):
        norms = [n.float().to(dev) for n in norms]
    return torch.stack(norms)


def apply_policy(owner: str, items: list[Item], policies: list[str]) -> tuple[list[Item], int]:
    """The items that pass their group's non-finite policy, and how many were skipped.

    One host sync for all flags together (none when every policy is "ignore"). "raise" raises an
    :class:`OptimizerInputError` before anything changed; "skip" drops the item (its state untouched).
    """
    checked = [i for i, pol in enumerate(policies) if pol != "ignore"]
    if not checked:
        return items, 0
    flags = torch.isfinite(stacked_norms([items[i].norm for i in checked])).tolist()
    bad = set()
    for i, ok in zip(checked, flags):
        # ‖G‖ overflows float32 for finite entries of ~1e19 and more: look at the entries before blaming G
        # (one more sync, only on this rare path), and keep a finite norm
        # (plain tensors only: under FSDP2 a process sees its rows, and all processes must take the same branch)
        g = items[i].grad
        if not ok and items[i].rows is None and g is not None and g.is_floating_point() and bool(torch.isfinite(g).all()):
            items[i].norm = torch.linalg.vector_norm(g, dtype=torch.float64).to(items[i].norm.dtype)
            continue
        if not ok:
            bad.add(i)
    raised = [i for i in sorted(bad) if policies[i] == "raise"]
    if raised:
        raise OptimizerInputError(
            f"{owner}: the gradient of {items[raised[0]].describe()} contains NaN or Inf; {UNCHANGED} "
            "(pass nonfinite='skip' to skip such parameters, leaving their state untouched)")
    return [it for i, it in enumerate(items) if i not in bad], len(bad)


def check_storage(items: list[Item]) -> None:
    """Each item's state is kept as its group's ``state_dtype`` says (the inner rules own their storage): a
    state made with another one (the key changed after steps were taken) is a ValueError before anything changed."""
    from discrete.subspace import basis_storage_problem, inner_states

    layouts: dict[tuple, list] = {}        # the expected layouts, once per (plan, rule, shape) in this step
    for it in items:
        if it.fresh or it.rows is not None:    # DTensor states: global shapes, checked at load
            continue
        problem = basis_storage_problem(it.state["proj"], it.plan.proj_dtype) if it.projected else None
        if problem:
            raise ValueError(f"{it.describe()}: the state {problem}; {UNCHANGED}")
        key = (id(it.plan), id(it.rule), tuple(it.param.shape))
        expected = layouts.get(key)
        if expected is None:
            inners = inner_states(tuple(it.param.shape), it.rule, it.plan) if it.projected else \
                [(it.plan.inner, tuple(it.param.shape), "")]
            expected = layouts[key] = [(inner, shape, prefix, inner.layout(shape, prefix))
                                       for inner, shape, prefix in inners]
        for inner, shape, prefix, layout in expected:
            problem = inner.check_state(it.state, shape, prefix, layout)
            if problem:
                raise ValueError(f"inner optimizer {inner.name!r}: the state {problem}; convert it with "
                                 "InnerRule.convert_state (discrete.inner) (or keep the state_dtype it was made with); "
                                 f"{it.describe()}: {UNCHANGED}")


# -- the rules' outputs ----------------------------------------------------------------------------
def trusted(rule: ProjectionRule) -> bool:
    """Built-in rules return finite tensors of P's shape for a finite G; a user's rule is checked every call."""
    return type(rule) in BUILTIN_RULES


def own(it: Item, *tensors: Tensor) -> tuple[Tensor, ...]:
    """What a rule is handed: the tensors themselves for a built-in rule, copies for a user's, so that a rule
    that writes into its P or G (``P.mul_(...)``) cannot change the optimizer's state or the gradient (a step
    it then fails would no longer be atomic, and one it completes would step with a changed P)."""
    return tensors if trusted(it.rule) else tuple(t.clone() for t in tensors)


def guarded(it: Item, what: str, fn: Callable[[], T]) -> T:
    """``fn()`` with any failure of the rule (an exception, ``sys.exit``) turned into a :class:`StepRejected`
    naming the rule and the parameter; KeyboardInterrupt passes through (nothing has changed either way)."""
    try:
        return fn()
    except StepRejected:
        raise
    except (Exception, SystemExit) as exc:          # SystemExit: a rule's sys.exit() must not end the process
        kind = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raised {type(exc).__name__}: {exc}"
        raise StepRejected(f"projection rule {it.rule.describe()} {kind} in its {what} for {it.describe()}; "
                           f"{UNCHANGED}") from None


def check_output(it: Item, what: str, out, like: Tensor) -> Tensor:
    """A user rule's output must be a finite floating tensor of ``like``'s shape and device (P's); built-ins pass
    unchecked."""
    if trusted(it.rule):
        return out
    problem = None
    if not torch.is_tensor(out):
        problem = f"returned {type(out).__name__}, expected a tensor of shape {tuple(like.shape)}"
    elif tuple(out.shape) != tuple(like.shape):
        problem = f"returned shape {tuple(out.shape)}, expected {tuple(like.shape)} (the shape of P)"
    elif not out.is_floating_point():
        problem = f"returned dtype {out.dtype}, expected a floating dtype"
    elif out.device != like.device:
        problem = f"returned a tensor on device {out.device}, expected {like.device} (P's device)"
    elif not bool(torch.isfinite(out).all()):
        problem = "returned non-finite values"
    if problem:
        raise StepRejected(f"projection rule {it.rule.describe()} {problem} in its {what} for {it.describe()}; "
                           f"{UNCHANGED}")
    return out


# -- processes ---------------------------------------------------------------------------------------
def agree(error: BaseException | None, group) -> None:
    """All processes of ``group`` learn whether any failed before anyone commits; every process raises then.

    One all-reduce of one number. The failing process re-raises its own error; the others say which
    process failed.
    """
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else torch.device("cpu")
    flag = torch.tensor([0.0 if error is None else float(dist.get_rank() + 1)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    if error is not None:
        raise error
    if float(flag) > 0:
        raise StepRejected(f"process {int(float(flag)) - 1} rejected this step (its error says why); {UNCHANGED}")
