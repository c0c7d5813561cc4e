"""FSDP2 parameters (``fully_shard``: DTensors sharded by rows): the step on local shards, collectives by design.

FSDP2 shards every parameter W (m, n) by rows over a 1-D mesh of k processes: placement ``Shard(0)``,
process i holding rows [start_i, stop_i) in ``torch.chunk`` sizes, and the gradient the same way after
FSDP2's reduce-scatter. The step runs on the local shards (``to_local()``: the same storage, updated in
place) with the functions of :mod:`discrete.subspace`, and these collectives (k processes, one group):

* **every group with a non-finite check or a smooth rule**: one all-reduce of the squared local norms
  (one number per parameter): ‖G‖² = Σᵢ‖Gᵢ‖², for the check and for OSD's 1/‖G‖.
* **full-rank parameters**: none (elementwise). State ``Shard(0)`` like W.
* **projected, right side** (P (n, r) spans the *unsharded* dimension; ``std`` on m ≥ n): Ĝ = GP gives
  Ĝᵢ = GᵢP, **no collective**. P is **replicated**, Ĝ's moments (m, r) and RSO's B are ``Shard(0)`` like
  W, and W_i ← W_i + ε·scale·UᵢPᵀ is local. OSD's field needs AAᵀ = ΣĜᵢᵀĜᵢ/‖G‖² (r, r) and
  B = ΣGᵢᵀĜᵢ/‖G‖² (n, r): **one all-reduce of (r + n)·r numbers**; then every process computes the same
  P update on the same numbers.
* **projected, left side** (P (m, r) spans the *sharded* dimension; ``std`` on m < n): Ĝ = PᵀG = ΣᵢPᵢᵀGᵢ:
  **one all-reduce of r·n numbers** (the only way: each process holds a part of every column of G).
  P and its optimizer's moments are ``Shard(0)`` (Pᵢ = P's rows of process i), Ĝ's moments (r, n) and
  RSO's B are **replicated** (each process runs the same r×n inner step on the same Ĝ, rather than a
  scatter and a gather), and W_i ← W_i + ε·scale·PᵢU is local. OSD's field: A = Ĝ/‖G‖ is known,
  Bᵢ = GᵢAᵀ/‖G‖ is local, and PᵀP = ΣPᵢᵀPᵢ (r, r) rides in the same all-reduce as Ĝ.
* **refresh steps** (P₀; GaLore's SVD and RSO's draw every T steps): G is all-gathered (m, n) (and P, on
  the left side); one process per matrix runs the rule on the full matrix (matrix i on process i mod k, so
  k processes compute k SVDs at once) and broadcasts the basis (P is then bit-identical everywhere), and
  each process keeps its rows. An SVD needs the whole matrix; at one refresh per T steps this costs one
  all-gather of W's size per matrix every T steps.
  Random draws are seeded by (seed, parameter index, step), so every process draws the same P.
* **moment transport** (``switch`` ``rotate`` or ``rotate_m`` with a smooth rule: after every P step,
  R = (P_newᵀP_new)⁻¹P_newᵀP_old): on the left side ΣPᵢ,newᵀPᵢ,new and ΣPᵢ,newᵀPᵢ,old, stacked in **one
  all-reduce of 2·r·r**; on the right side
  (P replicated) none. At a jump (refresh step) R is computed from the gathered P: no extra collective.

The rule for state: a tensor with an m dimension (P and its optimizer state on the left side; Ĝ's
moments and B on the right side) is sharded like W's rows; a tensor without is replicated (a DTensor with
``Replicate()``), so ``torch.distributed.checkpoint`` saves and reshards it correctly. ``step`` stays a
plain 0-d tensor, as torch's optimizers under FSDP2.

Supported: ``fully_shard`` over a 1-D mesh (placements ``(Shard(0),)``) and the projection rules of
:data:`SHARDED_RULES`, without ``proj_retract`` on the left side (the QR of a row-sharded P needs the
whole P); the per-matrix path (no batching). Anything else is a :class:`UserError` raised
before any state changes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from discrete.subspace import Plan, init_state, new_basis, projected_step_, refresh_event, switch_basis_
from osd_theory import discrete_steps as ds
from osd_theory.errors import UserError
from osd_theory.kernels import LEFT, gram_float32, online_pca_grad_from_grams
from osd_theory.projections import ProjectionRule


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


def broadcast_basis(P: Tensor | None, owner: int, shape: tuple[int, int], rows: Rows) -> Tensor | None:
    """The basis computed by process ``owner`` (group rank) on every process, or None everywhere if it has none."""
    import torch.distributed as dist

    src = dist.get_global_rank(rows.group, owner)
    device = torch.device(rows.mesh.device_type, torch.cuda.current_device()) if rows.mesh.device_type == "cuda" \
        else torch.device(rows.mesh.device_type)
    ok = torch.tensor([0.0 if P is None else 1.0], device=device)
    dist.broadcast(ok, src=src, group=rows.group)
    if float(ok) == 0.0:
        return None
    P = P.contiguous() if P is not None else torch.empty(shape, dtype=torch.float32, device=device)
    dist.broadcast(P, src=src, group=rows.group)
    return P


# -- state: DTensors whose placement follows the rule "an m dimension is sharded" ------------------
def has_rows(key: str, side: int) -> bool:
    """Whether state ``key`` of a projected matrix has W's m dimension (then it is sharded like W)."""
    p_family = key == "proj" or key.startswith("proj_")      # P and the P-optimizer's moments: P's shape
    return (side == LEFT) if p_family else (side != LEFT)     # else Ĝ's shape: (r, n) LEFT, (m, r) RIGHT


def to_dtensor(full: Tensor, rows: Rows, sharded: bool) -> Tensor:
    from torch.distributed.tensor import DTensor, Replicate, Shard

    if not sharded:
        return DTensor.from_local(full, rows.mesh, [Replicate()], run_check=False)
    stride = torch.empty(full.shape, device="meta").stride()
    return DTensor.from_local(full[rows.start:rows.stop].clone(), rows.mesh, [Shard(0)], run_check=False,
                              shape=full.shape, stride=stride)


def sharded_state(full_state: dict, rows: Rows) -> dict:
    """:func:`discrete.subspace.init_state` (full tensors) as DTensors placed by :func:`has_rows`."""
    side = full_state["proj_side"]
    return {k: to_dtensor(v, rows, has_rows(k, side)) if torch.is_tensor(v) and k != "step" else v
            for k, v in full_state.items()}


def local_view(state: dict) -> dict:
    """The state with every DTensor replaced by its local tensor (the same storage: in-place ops update it)."""
    return {k: v.to_local() if is_dtensor(v) else v for k, v in state.items()}


# -- the projected step per side: (Ĝ, the P field) from local shards -----------------------------------
def _inverse(norm: Tensor) -> Tensor:
    return torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))


def online_pca_left(P: Tensor, G: Tensor, norm: Tensor, rows: Rows, rule) -> tuple[Tensor, Callable | None]:
    """P: this process's rows Pᵢ (mᵢ, r); G: Gᵢ (mᵢ, n). Ĝ (r, n) and the field's rows (mᵢ, r)."""
    G_hat, PtP = all_reduce_([P.mT @ G, gram_float32(P)], rows)      # ΣPᵢᵀGᵢ, ΣPᵢᵀPᵢ: one all-reduce
    inv = _inverse(norm)
    A = G_hat * inv                                                 # PᵀG̃ (r, n)
    B = (G @ A.mT) * inv                                            # G̃ᵢAᵀ (mᵢ, r)
    return G_hat, lambda t: -online_pca_grad_from_grams(P, A @ A.mT, B, rule.pca_lambda, PtP)


def online_pca_right(P: Tensor, G: Tensor, norm: Tensor, rows: Rows, rule) -> tuple[Tensor, Callable | None]:
    """P (n, r) replicated; G: Gᵢ (mᵢ, n). Ĝᵢ = GᵢP (mᵢ, r) and the (replicated) field (n, r)."""
    G_hat = G @ P                                                   # no collective
    inv2 = _inverse(norm) ** 2
    AAt, B = all_reduce_([G_hat.mT @ G_hat, G.mT @ G_hat], rows)   # ΣĜᵢᵀĜᵢ, ΣGᵢᵀĜᵢ: one all-reduce
    AAt, B = AAt * inv2, B * inv2                                   # AAᵀ (r, r), B = G̃ᵀ(G̃P) (n, r)
    return G_hat, lambda t: -online_pca_grad_from_grams(P, AAt, B, rule.pca_lambda, gram_float32(P))


def fixed_left(P, G, norm, rows, rule):
    return all_reduce_([P.mT @ G], rows)[0], None                   # ΣPᵢᵀGᵢ (r, n)


def fixed_right(P, G, norm, rows, rule):
    return G @ P, None                                              # GᵢP (mᵢ, r): no collective


# rule name -> (left, right) functions giving (Ĝ, field); rules without a flow (jump rules, constant) need no field
SHARDED_RULES: dict[str, tuple[Callable, Callable]] = {
    "online_pca": (online_pca_left, online_pca_right),
    "online_pca_refresh": (online_pca_left, online_pca_right),   # + periodic_svd's jump: a refresh step
    "periodic_svd": (fixed_left, fixed_right),
    "random_jump": (fixed_left, fixed_right),
    "constant": (fixed_left, fixed_right),
}


# -- the steps ------------------------------------------------------------------------------------
def refresh_sharded_(local: dict, G: Tensor, rule: ProjectionRule, plan: Plan, index: int, rows: Rows,
                     event: str) -> tuple[str, float | None]:
    """Step 1 on the gathered G (and P, left side); each process keeps its rows of the owner's basis."""
    side = local["proj_side"]
    full = {**local, "proj": gather_rows(local["proj"], rows) if side == LEFT else local["proj"]}
    G_full = gather_rows(G, rows)
    owner = index % rows.mesh.size()          # matrices take turns: k processes run k SVDs at once
    mine = rows.mesh.get_local_rank() == owner
    P_new = broadcast_basis(new_basis(full, G_full, rule, plan, index, event) if mine else None, owner,
                            tuple(full["proj"].shape), rows)
    if P_new is None:
        return "skipped", None
    overlap = switch_basis_(full, P_new, plan, event)        # the moments through their local views
    if side == LEFT:
        local["proj"].copy_(P_new[rows.start:rows.stop])
    for key in ("last_refresh_step", "subproblem_start"):
        if key in full:
            local[key] = full[key]
    return event, overlap


def projected_step(opt, group: dict, p: Tensor, G: Tensor, norm: Tensor, rows: Rows, index: int) -> None:
    """Steps 1–5 for one row-sharded matrix (G: this process's float32 rows of the gradient)."""
    rule = opt._bound_rule(group, tuple(p.shape))
    plan = opt._plan(group, rule)
    state = opt.state[p]
    if not state:
        state.update(sharded_state(init_state(p, rule, plan, index), rows))
    local = local_view(state)
    event = refresh_event(local, rule, plan)
    if event is not None:
        opt._note(*refresh_sharded_(local, G, rule, plan, index, rows, event), index)
    left, right = SHARDED_RULES[rule.name]
    is_left = local["proj_side"] == LEFT
    # P row-sharded (left side): the r × r products P_newᵀP_new, P_newᵀP_old of a moment transport (switch rotate,
    # rotate_m) after the P step are this process's part of the sums: one all-reduce of 2·r·r. Right side: P
    # replicated, the products complete.
    reduce = (lambda x: all_reduce_([x], rows)[0]) if is_left else None
    with plan.mode.context():
        G_hat, field = (left if is_left else right)(local["proj"], G, norm, rows, rule)
        projected_step_(p.to_local(), G_hat, local, plan, field, retract=getattr(rule, "retract", False),
                        reduce=reduce, index=index)
    state.update({k: v for k, v in local.items() if not torch.is_tensor(v)})   # plain scalars set in the view


def full_rank_step(opt, p: Tensor, G: Tensor, plan: Plan) -> None:
    """:meth:`SubspaceOptimizer._full_rank_step` on this process's rows (elementwise: no collective)."""
    state = opt.state[p]
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32)
        # the inner rule's layout (8-bit: codes and block scales, blocks along rows), each Shard(0) as p
        state.update({k: to_dtensor(v, rows_of(p), True) for k, v in plan.inner.init_state(p).items()})
    state["step"] += 1
    U = plan.inner.step(local_view(state), G, plan.hp, int(state["step"]))
    W = p.to_local()
    ds.decoupled_weight_decay_(W, plan.hp.lr, plan.weight_decay)
    W.add_(U.to(W.dtype), alpha=plan.hp.lr)


def global_norms(grads: list[Tensor], rows: list[Rows]) -> list[Tensor]:
    """‖G‖ of each full gradient from the local rows: one all-reduce of the squared local norms."""
    if not grads:
        return []
    if len({id(r.group) for r in rows}) != 1:
        raise UserError("the parameters of one param group are sharded over different meshes: not supported")
    sq = torch.stack([n.float() for n in torch._foreach_norm(grads)]) ** 2
    (sq,) = all_reduce_([sq], rows[0])
    return list(sq.sqrt().unbind(0))


def step_group(opt, group: dict, params: list[Tensor], indices: dict[int, int]) -> list[Tensor]:
    """Step the DTensor parameters of a param group; return the others (for the ordinary path)."""
    from discrete import state as S

    shard = [p for p in params if is_dtensor(p)]
    rest = [p for p in params if not is_dtensor(p)]
    rows = [rows_of(p) for p in shard]
    projected = ["rank" in group and p.ndim == 2 for p in shard]
    rules = [opt._bound_rule(group, tuple(p.shape)) for p, pr in zip(shard, projected) if pr]
    unsupported = sorted({r.name for r in rules} - set(SHARDED_RULES))
    if unsupported:
        raise UserError(f"projection {unsupported[0]!r} is not supported with FSDP2 (DTensor) parameters; "
                        f"supported: {sorted(SHARDED_RULES)} (docs/scaling.md)")
    if any(r.side_ == LEFT and getattr(r, "retract", False) for r in rules):
        raise UserError("proj_retract (the QR retraction of P) is not supported with FSDP2 on the left side, where P "
                        "is row-sharded and its QR needs the whole P: use proj_type='right' or no retraction "
                        "(docs/scaling.md)")
    grads = []
    for p in shard:
        if not is_dtensor(p.grad):
            raise UserError("an FSDP2 (DTensor) parameter has a plain-tensor gradient: not supported")
        G = p.grad.to_local().float()
        grads.append(-G if group["maximize"] else G)
    smooth = any(r.smooth for r in rules)               # OSD's field needs 1/‖G‖
    norms = global_norms(grads, rows) if (group["nonfinite"] != "ignore" or smooth) else [None] * len(shard)
    keep = list(range(len(shard)))
    if group["nonfinite"] != "ignore" and shard:
        flags = torch.isfinite(torch.stack(norms)).cpu().tolist()       # the same on every process
        if not all(flags):
            if group["nonfinite"] == "raise":
                raise S.OptimizerInputError(f"{type(opt).__name__}: a gradient contains NaN or Inf (pass nonfinite='skip' "
                                            "to skip such parameters, leaving their state untouched)")
            opt.diagnostics["skipped_nonfinite"] += flags.count(False)
            keep = [i for i in keep if flags[i]]
    plan = opt._plan(group, None)
    for i in keep:
        p = shard[i]
        if projected[i]:
            projected_step(opt, group, p, grads[i], norms[i], rows[i], indices[id(p)])
        else:
            full_rank_step(opt, p, grads[i], plan)
    return rest
