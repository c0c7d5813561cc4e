"""The FSDP2 executor (``fully_shard``: DTensors sharded by rows): the step on local shards, collectives by design.

FSDP2 shards every parameter W (m, n) by rows over a 1-D mesh of k processes: placement ``Shard(0)``,
process i holding rows [start_i, stop_i) in ``torch.chunk`` sizes, and the gradient the same way after
FSDP2's reduce-scatter. The step runs on the local shards (``to_local()``: the same storage, updated in
place) with the functions of :mod:`discrete.subspace`, and these collectives (k processes, one group):

* **the checks**: one all-reduce of the squared local norms (one number per parameter): ‖G‖² = Σᵢ‖Gᵢ‖², for
  the non-finite policy and the rules' 1/‖G‖; and, after every process prepared its step, one all-reduce of
  one number (:func:`discrete.step.checks.agree`): a failure anywhere raises everywhere before anyone commits.
* **full-rank parameters**: none (elementwise). State ``Shard(0)`` like W.
* **projected, right side** (P (n, r) spans the *unsharded* dimension): P and its optimizer's moments are
  sharded by rows of n (``torch.chunk`` sizes, not replicated: k× less P state per process) and P is
  **all-gathered (n·r numbers)** at the start of the step; then Ĝᵢ = GᵢP and W_i ← W_i + ε·scale·UᵢPᵀ are
  local, Ĝ's moments (m, r) and RSO's B are ``Shard(0)`` like W, and each process steps its rows of P.
* **projected, left side** (P (m, r) spans the *sharded* dimension): Ĝ = PᵀG = ΣᵢPᵢᵀGᵢ: **one all-reduce of
  r·n numbers**. P and its optimizer's moments are ``Shard(0)``, Ĝ's moments (r, n) and RSO's B replicated.
* **the P field of a smooth rule**, whatever the rule (no table of rule names: the path follows from how the
  rule defines its field):
  - the online-PCA family: A = Ĝ/‖G‖ and the r×r grams from the all-reduce above (left) or one all-reduce
    of (r + n)·r numbers (right, ΣĜᵢᵀĜᵢ and ΣGᵢᵀĜᵢ);
  - a rule with the default parts C P = G̃G̃ᵀP (Oja, adversarial, random_smooth, ...): G̃ᵀP = ΣG̃ᵢᵀPᵢ (left) or
    ΣG̃ᵢᵀ(G̃ᵢP) (right) by one all-reduce of n·r numbers, then (left) an all-gather of the m×r parts and P so
    that ``field_from_parts`` sees whole bases;
  - any other rule (a user Γ(t, P, G) sees whole matrices): G (and P, left) all-gathered, the field computed on
    the whole matrix, each process keeping its rows.
* **refresh steps** (P₀; GaLore's SVD and RSO's draw every T steps): G all-gathered (and P, left); one process per
  matrix runs the rule (matrix i on process i mod k) and broadcasts the basis, with a flag that says "none"
  or "the rule failed", so every process takes the same branch.
* **the moment transport** (``switch`` rotate / rotate_m after a P step) and the QR retraction of a left-side P:
  the r×r sums by one all-reduce of 2·r·r; the QR on the all-gathered P (m×r), each process keeping its rows.

**Batched over the step's matrices** (:func:`prepare_items`): the right-side P's are gathered in one all-gather,
and every matrix's partial sums above (left-side Ĝ, the field's grams or parts) go in one all-reduce (one per
dtype), so a regular step of the online-PCA family, GaLore or RSO makes 4 collectives whatever the number of
matrices (the norms, the P gather, the sums, the agreement; ``tests/discrete/test_fsdp_collectives.py``). Refresh
steps, the default parts on the left and rules that need whole matrices add their own per matrix.

State: P and its optimizer's moments are sharded by P's rows (W's rows on the left side, rows of n on the
right); Ĝ's moments and B are sharded like W's rows where they have them (the right side) and replicated
otherwise (``Replicate()``), so ``torch.distributed.checkpoint`` saves and reshards every tensor correctly.
``step`` stays a plain 0-d tensor.

Supported: ``fully_shard`` over a 1-D mesh (placements ``(Shard(0),)``). Anything else is a
:class:`UserError` raised before any state changes.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from discrete.step.checks import StepRejected, agree, check_output, guarded, own
from discrete.step.items import Context, Item, note_event
from discrete.rounding import generators_for
from discrete.step.single import add_update_
from discrete.subspace import new_basis, projected_step_, refresh_event, switch_basis_
from osd_theory.errors import UserError
from osd_theory.kernels import LEFT, RIGHT, gram_float32, online_pca_grad_from_grams, online_pca_parts, project
from osd_theory.projections import ProjectionRule
from osd_theory.projections.base import SmoothRule, retract_qr
from osd_theory.projections.rules import OnlinePCA


def is_dtensor(t: Any) -> bool:
    """True for a DTensor (without importing torch.distributed.tensor: none exists unless it was imported)."""
    mod = sys.modules.get("torch.distributed.tensor")
    return mod is not None and isinstance(t, mod.DTensor)


def is_sharded(params: list[Tensor]) -> bool:
    return any(is_dtensor(p) for p in params)


def check_projectable(params: list[Tensor]) -> None:
    """FSDP1 (``FullyShardedDataParallel``) flattens parameters into 1-D shards: a projected group would
    silently take the full-rank path (GaLore#47 is this class of failure). Refuse it at construction."""
    if any(getattr(p, "_fsdp_flattened", False) for p in params):
        raise UserError("parameters flattened by FSDP1 (FullyShardedDataParallel) cannot be projected: their 2-D "
                        "shape is gone; shard with FSDP2's fully_shard instead (docs/scaling.md)")


@dataclass(frozen=True)
class Rows:
    """Rows [start, stop) of a ``Shard(0)`` DTensor of global ``shape`` held by this process."""

    mesh: Any
    group: Any                 # the mesh's process group
    start: int
    stop: int
    shape: tuple[int, ...]


def chunk_rows(mesh: Any, size: int, shape: tuple[int, ...]) -> Rows:
    """This process's rows [start, stop) of a dimension of ``size`` split in ``torch.chunk`` sizes (as Shard(0))."""
    k, i = mesh.size(), mesh.get_local_rank()
    chunk = -(-size // k)
    start = min(i * chunk, size)
    return Rows(mesh, mesh.get_group(), start, min(start + chunk, size), shape)


def p_rows(rows: Rows, side: int, rank: int) -> Rows:
    """The rows of P this process keeps: W's rows on the left side (P is (m, r)), a chunk of n on the right."""
    return rows if side == LEFT else chunk_rows(rows.mesh, rows.shape[1], (rows.shape[1], rank))


def rows_of(p: Tensor) -> Rows:
    from torch.distributed.tensor import Shard

    mesh = p.device_mesh
    if mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
        raise UserError(f"parameters placed as {tuple(p.placements)} on a {mesh.ndim}-D mesh are not supported: the "
                        "optimizers support FSDP2's fully_shard over a 1-D mesh (placements (Shard(0),)); "
                        "HSDP and tensor parallelism are not (docs/scaling.md)")
    k, i, m = mesh.size(), mesh.get_local_rank(), p.shape[0]
    chunk = -(-m // k)                                    # torch.chunk sizes, as DTensor's Shard(0)
    start = min(i * chunk, m)
    stop = min(start + chunk, m)
    if p.to_local().shape[0] != stop - start:
        raise UserError(f"unexpected shard of a {tuple(p.shape)} parameter: {p.to_local().shape[0]} rows on process {i}, "
                        f"expected {stop - start} (torch.chunk sizes)")
    return Rows(mesh, mesh.get_group(), start, stop, tuple(p.shape))


# -- collectives ---------------------------------------------------------------------------------
def all_reduce_(parts: list[Tensor], rows: Rows) -> list[Tensor]:
    """Σ over the processes of each tensor, in one all-reduce of their concatenation."""
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in parts])
    dist.all_reduce(flat, group=rows.group)
    out, at = [], 0
    for t in parts:
        out.append(flat[at:at + t.numel()].view(t.shape))
        at += t.numel()
    return out


def gather_rows(local: Tensor, rows: Rows) -> Tensor:
    """The full (m, ·) matrix from every process's rows (an all-gather)."""
    from torch.distributed.tensor import DTensor, Shard

    shape = (rows.shape[0], *local.shape[1:])
    stride = torch.empty(shape, device="meta").stride()
    return DTensor.from_local(local.contiguous(), rows.mesh, [Shard(0)], run_check=False, shape=shape,
                              stride=stride).full_tensor()


def _device(rows: Rows) -> torch.device:
    return torch.device(rows.mesh.device_type, torch.cuda.current_device()) if rows.mesh.device_type == "cuda" \
        else torch.device(rows.mesh.device_type)


def broadcast_basis(P: Tensor | None, failed: bool, owner: int, like: Tensor, rows: Rows) -> tuple[Tensor | None, bool]:
    """(the basis of process ``owner``, whether its rule failed) on every process; (None, False): it has none."""
    import torch.distributed as dist

    src = dist.get_global_rank(rows.group, owner)
    flag = torch.tensor([2.0 if failed else 0.0 if P is None else 1.0], device=_device(rows))
    dist.broadcast(flag, src=src, group=rows.group)
    if float(flag) != 1.0:
        return None, float(flag) == 2.0
    P = P.contiguous() if P is not None else torch.empty(like.shape, dtype=like.dtype, device=_device(rows))
    dist.broadcast(P, src=src, group=rows.group)
    return P, False


# -- state: DTensors whose placement follows the rule "an m dimension is sharded" ------------------
def is_p_family(key: str) -> bool:
    """P and the P-optimizer's moments (P's shape): sharded by P's rows on either side (:func:`p_rows`)."""
    return key == "proj" or key.startswith("proj_")


def has_rows(key: str, side: int) -> bool:
    """Whether state ``key`` of Ĝ's shape has W's m dimension (then it is sharded like W): (m, r) on the right side."""
    return side != LEFT


def to_dtensor(full: Tensor, rows: Rows, sharded: bool) -> Tensor:
    from torch.distributed.tensor import DTensor, Replicate, Shard

    if not sharded:
        return DTensor.from_local(full, rows.mesh, [Replicate()], run_check=False)
    stride = torch.empty(full.shape, device="meta").stride()
    return DTensor.from_local(full[rows.start:rows.stop].clone(), rows.mesh, [Shard(0)], run_check=False,
                              shape=full.shape, stride=stride)


def sharded_state(full_state: dict, rows: Rows) -> dict:
    """:func:`discrete.subspace.init_state` (full tensors) as DTensors: P's family sharded by P's rows
    (:func:`p_rows`), Ĝ's moments and B by W's rows where they have them (:func:`has_rows`), else replicated."""
    side = full_state["proj_side"]
    prow = p_rows(rows, side, full_state["proj"].shape[-1])
    out = {}
    for k, v in full_state.items():
        if not torch.is_tensor(v) or k == "step":
            out[k] = v
        elif is_p_family(k):
            out[k] = to_dtensor(v, prow, True)
        else:
            out[k] = to_dtensor(v, rows, has_rows(k, side))
    return out


def full_rank_state(p: Tensor, inner) -> dict:
    """The state of a full-rank DTensor parameter: ``Shard(0)`` like W (``zeros_like`` keeps the placement)."""
    state = {"step": torch.zeros((), dtype=torch.float32)}
    # the inner rule's layout (8-bit: codes and block scales, blocks along rows), each Shard(0) as p
    state.update({k: to_dtensor(v, rows_of(p), True) for k, v in inner.init_state(p).items()})
    return state


def local_view(state: dict) -> dict:
    """The state with every DTensor replaced by its local tensor (the same storage: in-place ops update it)."""
    return {k: v.to_local() if is_dtensor(v) else v for k, v in state.items()}


# -- Ĝ and the P field from local shards -------------------------------------------------------------
def _sum(rows: Rows) -> Callable[[Tensor], Tensor]:
    return lambda x: all_reduce_([x], rows)[0]


def _uses_default_parts(rule: ProjectionRule) -> bool:
    return type(rule).field_parts is SmoothRule.field_parts


# -- prepare and commit ------------------------------------------------------------------------------
def _refresh(it: Item, local: dict, rows: Rows) -> Tensor:
    """Step 1 on the gathered G (and P, left); the basis this process steps with (its rows, left side)."""
    side = local["proj_side"]
    P_full = gather_rows(local["proj"], rows) if side == LEFT else local["proj"]
    G_full = gather_rows(it.grad, rows)
    owner = it.index % rows.mesh.size()          # matrices take turns: k processes run k SVDs at once
    P_new, failed, error = None, False, None
    if rows.mesh.get_local_rank() == owner:
        try:
            P_in, G_in = own(it, P_full, G_full)
            P_new = guarded(it, "new basis", lambda: new_basis({**local, "proj": P_in}, G_in, it.rule, it.plan,
                                                               it.index, it.event, it.k))
            if P_new is not None:
                P_new = check_output(it, "new basis", P_new, P_full)
        except StepRejected as e:
            failed, error, P_new = True, e, None
    P_new, failed_anywhere = broadcast_basis(P_new, failed, owner, P_full, rows)
    if error is not None:
        raise error
    if failed_anywhere:
        raise StepRejected(f"projection rule {it.rule.describe()} failed on process {owner} for {it.describe()}")
    if P_new is None:
        it.event = "skipped"
        return local["proj"]
    it.P_new = P_new                                                   # the full basis (the transport needs it)
    return P_new[rows.start:rows.stop] if side == LEFT else P_new


def gather_many(locals_: list[Tensor], rows: list[Rows]) -> list[Tensor]:
    """The full matrices of several row-sharded tensors (``torch.chunk`` rows of (N, ·)) in one all-gather: each
    process's rows of every tensor concatenated, padded to the largest process's total, gathered, cut apart."""
    import torch.distributed as dist

    if not locals_:
        return []
    k, me = rows[0].mesh.size(), rows[0].mesh.get_local_rank()

    def counts(rw: Rows, width: int) -> list[int]:                 # entries of each process's rows
        n, chunk = rw.shape[0], -(-rw.shape[0] // k)
        return [(min(i * chunk + chunk, n) - min(i * chunk, n)) * width for i in range(k)]

    sizes = [counts(rw, math.prod(t.shape[1:])) for t, rw in zip(locals_, rows)]
    totals = [sum(c[i] for c in sizes) for i in range(k)]
    flat = torch.zeros(max(totals), dtype=locals_[0].dtype, device=locals_[0].device)
    torch.cat([t.reshape(-1) for t in locals_], out=flat[:totals[me]])
    parts = [torch.empty_like(flat) for _ in range(k)]
    dist.all_gather(parts, flat, group=rows[0].group)
    out, offsets = [], [0] * k
    for t, c in zip(locals_, sizes):
        pieces = []
        for i in range(k):
            pieces.append(parts[i][offsets[i]:offsets[i] + c[i]])
            offsets[i] += c[i]
        out.append(torch.cat(pieces).view(-1, *t.shape[1:]))
    return out


def _partials(it: Item, P: Tensor, G: Tensor, side: int) -> list[Tensor]:
    """This process's parts of the sums the item's step needs (summed for all items in one all-reduce):
    Ĝ = ΣPᵢᵀGᵢ (left; on the right Ĝᵢ = GᵢP is local and set here) and the r×r / n×r products of the P field
    (the online-PCA family's grams, or the default parts' G̃ᵀP); any other rule's field needs whole matrices
    (gathered after the sum)."""
    if side != LEFT:
        it.G_hat = project(P, G, side)                                      # (mᵢ, r): this process's rows of Ĝ
    parts = [project(P, G, side)] if side == LEFT else []
    if it.rule.smooth and isinstance(it.rule, OnlinePCA):
        parts += [gram_float32(P)] if side == LEFT else [it.G_hat.mT @ it.G_hat, G.mT @ it.G_hat]
    elif it.rule.smooth and _uses_default_parts(it.rule):
        parts += [G.mT @ P] if side == LEFT else [G.mT @ it.G_hat]
    return parts


def _field(it: Item, P: Tensor, G: Tensor, summed: list[Tensor], rows: Rows) -> Tensor:
    """The P field at t = k from the summed parts (:func:`_partials`): P's local rows (left) or the whole P (right).

    Collectives here (the default parts on the left, any other rule) come before the rule's own code, and are the
    same on every process whatever the rule does, so a rule failing on one process cannot leave another waiting.
    """
    rule, side, t, inv = it.rule, it.state["proj_side"], float(it.k), it.inv
    if isinstance(rule, OnlinePCA):                       # the family's own closed form (THEORY.md §4.1)
        if side == LEFT:        # A = PᵀG̃ (r, n) from the summed Ĝ, B = G̃ᵢAᵀ (mᵢ, r) from this process's rows
            A, B = online_pca_parts(P, G, side, G_hat=it.G_hat, inv=inv)
            return -online_pca_grad_from_grams(P, A @ A.mT, B, rule.pca_lambda, summed[0])
        AAt, B = summed                                                     # ΣĜᵢᵀĜᵢ, ΣGᵢᵀĜᵢ
        return -online_pca_grad_from_grams(P, AAt * inv ** 2, B * inv ** 2, rule.pca_lambda, gram_float32(P))
    if _uses_default_parts(rule):                         # C P = G̃G̃ᵀP from local rows and the summed part
        if side == LEFT:
            CP_full, P_full = gather_rows(G @ summed[0] * inv ** 2, rows), gather_rows(P, rows)
            P_in, = own(it, P_full)
            field = guarded(it, "field", lambda: rule.field_from_parts(t, P_in, (CP_full,)))
            return check_output(it, "field", field, P_full)[rows.start:rows.stop]
        CP = summed[0] * inv ** 2
        P_in, = own(it, P)
        return check_output(it, "field", guarded(it, "field", lambda: rule.field_from_parts(t, P_in, (CP,))), P)
    G_full = gather_rows(G, rows)                         # any other rule: whole matrices
    P_full = gather_rows(P, rows) if side == LEFT else P
    P_in, G_in = own(it, P_full, G_full)
    field = guarded(it, "field", lambda: rule.field(t, P_in, G_in))
    field = check_output(it, "field", field, P_full)
    return field[rows.start:rows.stop] if side == LEFT else field


def prepare_items(items: list[Item]) -> StepRejected | None:
    """Steps 1, 2 and 5's field of every projected item from this process's rows, with the collectives of all
    items batched: one all-gather of the right-side P's, one all-reduce of every item's partial sums (Ĝ on the
    left, the field's grams); refresh steps and rules that need whole matrices add their own. Pure (collectives
    change no state). Returns the first rejection (the other processes reject the same item, or its failure
    was in the rule's own code after the last collective of that item)."""
    error = None
    live = []
    locals_ = [local_view(it.state) for it in items]
    right = [(it, loc) for it, loc in zip(items, locals_) if loc["proj_side"] != LEFT]
    for dtype in {loc["proj"].dtype for _, loc in right}:   # P (n, r) is sharded by rows too: the step uses all of it
        pick = [(it, loc) for it, loc in right if loc["proj"].dtype == dtype]
        whole = gather_many([loc["proj"] for _, loc in pick],
                            [p_rows(it.rows, RIGHT, loc["proj"].shape[-1]) for it, loc in pick])
        for (_, loc), P in zip(pick, whole):
            loc["proj"] = P
    for it, local in zip(items, locals_):                  # step 1 (its own collectives, on refresh steps only)
        try:
            it.event = refresh_event(local, it.rule, it.plan, it.k)
            P = _refresh(it, local, it.rows) if it.event is not None else local["proj"]
            it.P_whole = None if local["proj_side"] == LEFT else P
            live.append((it, local["proj_side"], P))
        except StepRejected as e:
            error = error or e
    partials = []
    for it, side, P in live:
        with it.plan.mode.context():
            partials.append(_partials(it, P, it.grad, side))
    flat = [x for ps in partials for x in ps]
    summed_by_index = {}
    for dtype in dict.fromkeys(x.dtype for x in flat):     # one all-reduce per dtype (float32, or float64 twins)
        idx = [i for i, x in enumerate(flat) if x.dtype == dtype]
        summed_by_index.update(zip(idx, all_reduce_([flat[i] for i in idx], live[0][0].rows)))
    at = 0
    for (it, side, P), ps in zip(live, partials):
        summed = [summed_by_index[at + j] for j in range(len(ps))]
        at += len(ps)
        try:
            with it.plan.mode.context():
                if side == LEFT:
                    it.G_hat = summed.pop(0)
                if it.rule.smooth:
                    it.field = _field(it, P, it.grad, summed, it.rows)
        except StepRejected as e:
            error = error or e
    return error


def prepare_item(it: Item) -> None:
    """One item's :func:`prepare_items` (raises its rejection)."""
    error = prepare_items([it])
    if error is not None:
        raise error


def reduce_squared_norms(items: list[Item], sq: Tensor) -> Tensor:
    """Σ over the processes of the squared local norms (one all-reduce); one mesh per step."""
    if len({id(it.rows.group) for it in items}) != 1:
        raise UserError("the parameters are sharded over different meshes: not supported (one 1-D mesh)")
    return all_reduce_([sq], items[0].rows)[0]


def prepare(items: list[Item], ctx: Context, prepared: bool = False) -> list[Item]:
    """Prepare every item on this process; then all processes agree, before any commits."""
    if prepared:
        raise UserError("per-layer mode does not support FSDP2 (DTensor) parameters")
    if any(it.projected and it.plan.proj_dtype != "float32" for it in items):
        raise UserError("proj_dtype='bf16' is not supported under FSDP2 (P is sharded in float32 there); "
                        "use proj_dtype='float32' with FSDP2")
    # every item takes part in every batched collective, also after one was rejected: the other processes are in them
    error = prepare_items([it for it in items if it.projected])
    if items:
        agree(error, items[0].rows.group)
    return items


def _commit_basis(it: Item, local: dict, prow: Rows) -> float | None:
    """Commit the new full basis: the switch policy sees whole P's (gathered), each process keeps its rows of P."""
    full = {**local, "proj": gather_rows(local["proj"], prow)}
    overlap = switch_basis_(full, it.P_new, it.plan, it.event, it.k)      # the moments through their local views
    local["proj"].copy_(it.P_new[prow.start:prow.stop])
    for key in ("last_refresh_step", "subproblem_start"):
        if key in full:
            local[key] = full[key]
    return overlap


def _retract_rows(rows: Rows) -> Callable[[Tensor], Tensor]:
    """The QR retraction of a row-sharded P: on the gathered P, each process keeping its rows."""
    return lambda P: retract_qr(gather_rows(P, rows))[rows.start:rows.stop]


def commit(items: list[Item], ctx: Context) -> None:
    for it in items:
        it.state["step"] += 1
        local = local_view(it.state)
        if not it.projected:
            U = it.plan.inner.step(local, it.grad, it.plan.hp, it.k + 1)
            add_update_(it.param.to_local(), U, it.plan, [it.index], it.k + 1)
            continue
        prow = p_rows(it.rows, local["proj_side"], local["proj"].shape[-1])
        overlap = _commit_basis(it, local, prow) if it.event in ("init", "jump") else None
        note_event(ctx.notes, it.event, overlap, it.index)
        # P row-sharded (both sides): the r×r products of a moment transport and of the tangent projection are
        # this process's part of the sums (one all-reduce each), and the QR needs the whole P; the right side's
        # field and weight update were computed with the whole P (prepare), the P step takes this process's rows
        retract = _retract_rows(prow) if getattr(it.rule, "retract", False) else False
        field = it.field if it.field is None or it.P_whole is None else it.field[prow.start:prow.stop]
        with it.plan.mode.context():
            projected_step_(it.param.to_local(), it.G_hat, local, it.plan, it.k + 1, field, retract=retract,
                            reduce=_sum(prow), P_whole=it.P_whole,
                            generators=generators_for(it.plan.stochastic_rounding, it.plan.seed,
                                                      [it.param.to_local()], [it.index], it.k + 1))
        it.state.update({k: v for k, v in local.items() if not torch.is_tensor(v)})   # plain scalars set in the view
