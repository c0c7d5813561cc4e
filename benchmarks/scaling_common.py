"""What benchmarks/memory.py and benchmarks/fsdp.py share: the LLaMA model, the optimizers as
``osd-theory validate`` builds them, activation checkpointing, random batches and the analytic memory formula.

Optimizers (param groups as discrete/validation/optim.py: the attention and MLP matrices projected with
rank r, ``update_proj_gap`` 200, scale 0.25, ``proj_type`` std; the rest full-rank Adam):

| name    | what                                                                                    |
|---------|-----------------------------------------------------------------------------------------|
| adamw   | ``torch.optim.AdamW(fused=True)`` on CUDA (the leanest torch AdamW: no foreach temporaries) |
| galore  | ``discrete.GaLore``; P₀ random instead of the SVD of G₀ (168 SVDs take ~40 s at 1B and do   |
|         | not change the steady-state memory; a refresh step's SVD transient is not measured here)  |
| osd     | ``discrete.OnlineSubspaceDescent`` (Adam on P, α 0.5, λ 0.1); P₀ random, as GaLore's       |
| rso     | ``discrete.RSO`` (Haar P, resampled every 200 steps)                                     |

Per-layer modes (``discrete.PerLayer``): ``off``; ``deferred`` (exact: clipping, schedule, accumulation as
the ordinary mode; keeps Ĝ, and OSD's P field, until ``step()``); ``in_backward`` (every parameter steps in
backward, nothing kept, no global clipping; for AdamW this is ``discrete.AdamW`` in backward).
All state is float32, weights float32, forward and backward under bf16 autocast (as ``osd-theory validate``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from discrete import OPTIMIZERS, PerLayer
from discrete.inner import resolve_inner, resolve_proj_optimizer
from discrete.validation.model import build_model
from discrete.validation.optim import DEFAULT_LR, DEFAULT_RANK, is_projected, projected_group_keys, split_params
from discrete.validation.config import OSD_DEFAULTS, RunConfig
from osd_theory.kernels import LEFT, SIDE_RULES

OPTIMIZER_NAMES = ("adamw", "galore", "osd", "rso")
PER_LAYER_MODES = ("off", "deferred", "in_backward")
SMOKE_MODEL = "tiny"                     # the CPU flavour of --smoke (dim 64, 2 layers)
SMOKE_VOCAB, SMOKE_RANK = 512, 8


class Checkpointed(torch.nn.Module):
    """A block whose activations are recomputed in backward (torch.utils.checkpoint, non-reentrant)."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x, cos, sin):
        return torch.utils.checkpoint.checkpoint(self.block, x, cos, sin, use_reentrant=False)


def llama(name: str, vocab: int, seq_len: int, device: torch.device, activation_checkpointing: bool,
          loss_chunk: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The validation track's LLaMA, built directly on ``device`` (a 7B model never passes through host memory);
    ``loss_chunk``: tokens per piece of the head + loss (0: unchunked; discrete/validation/loss.py); ``dtype``:
    of the weights, created in it (bf16 weights never exist in float32; RoPE tables stay float32)."""
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = build_model(name, vocab_size=vocab, max_seq_len=seq_len, loss_chunk=loss_chunk)
    finally:
        torch.set_default_dtype(default)
    if activation_checkpointing:
        for i, block in enumerate(model.layers):
            model.layers[i] = Checkpointed(block)
    return model


def model_and_vocab(spec: dict) -> tuple[str, int]:
    """The flavour and vocabulary a benchmark row builds: --smoke's tiny CPU model, else the row's model with
    the validation track's 32k vocabulary."""
    return (SMOKE_MODEL, SMOKE_VOCAB) if spec["smoke"] else (spec["model"], 32000)


def rank_for(model_name: str, rank: int | None) -> int:
    return rank if rank is not None else (SMOKE_RANK if model_name == SMOKE_MODEL else DEFAULT_RANK[model_name])


def make_optimizer(model: torch.nn.Module, name: str, per_layer: str, rank: int, fused: bool,
                   state_dtype: str = "float32", stochastic_rounding: bool = False):
    """(optimizer, PerLayer or None) as in the table of the module docstring; ``state_dtype`` other than
    float32 (discrete.lowbit) and ``stochastic_rounding`` use discrete's AdamW for the baseline too."""
    cfg = RunConfig()
    lr = DEFAULT_LR[name]
    lean = dict(state_dtype=state_dtype, stochastic_rounding=stochastic_rounding)
    if name == "adamw" and per_layer == "off" and state_dtype == "float32" and not stochastic_rounding:
        return torch.optim.AdamW(model.parameters(), lr=lr, fused=fused or None), None
    if name == "adamw":
        opt = OPTIMIZERS["adamw"](model.parameters(), lr=lr, nonfinite="ignore", **lean)
    else:
        proj, full = split_params(model)
        extra = {"osd": {**OSD_DEFAULTS, "proj_init": "random"},  # the validation runs' alpha and lambda
                 "galore": {"proj_init": "random"}, "rso": {"seed": 0}}[name]
        groups = [{"params": full}, {"params": proj, **projected_group_keys(cfg, rank), **extra}]
        opt = OPTIMIZERS[name](groups, lr=lr, nonfinite="ignore", **lean)
    if per_layer == "off":
        return opt, None
    return opt, PerLayer(opt, in_backward=(per_layer == "in_backward"))


def clip_(model, layers, max_norm: float = 1.0) -> torch.Tensor:
    """Global-norm clipping as the validation trainer (per-layer: the norm includes the freed gradients)."""
    if layers is None:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return layers.grad_norm() if layers.in_backward else layers.clip_grad_norm_(max_norm)


def random_batch(batch: int, seq_len: int, vocab: int, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(seed)
    xy = torch.randint(0, vocab, (batch, seq_len + 1), device=device, generator=g)
    return xy[:, :-1], xy[:, 1:]


# -- the analytic formula ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Analytic:
    """Bytes a model, optimizer and mode hold between backward and ``step()``."""

    weights: int
    grads: int                 # full-size gradients held after backward
    pending: int               # per-layer deferred: Ĝ (+ OSD's P field) per projected matrix
    state: int                 # optimizer state tensors (0-d step counters excluded)

    def gb(self) -> dict:
        return {k: v / 2**30 for k, v in vars(self).items()} | {"static": (self.weights + self.grads + self.pending
                                                                             + self.state) / 2**30}


def layout_bytes(layout: dict) -> int:
    """Bytes of an inner rule's layout (discrete.inner.InnerRule.layout): key -> (shape, dtype)."""
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in layout.values())


def analytic(model: torch.nn.Module, name: str, per_layer: str, rank: int, state_dtype: str = "float32",
             proj_state_dtype: str = "float32", proj_optimizer: str = "adam", proj_dtype: str = "float32") -> Analytic:
    """The formula, per parameter (m, n) of numel N and b bytes per weight element (4 float32, 2 bf16);
    projected matrices with side d (P is d×r) and k the other:

    weights bN · grads bN (off), 0 for projected (deferred, in_backward) and full-rank (in_backward) ·
    pending 4(rk + [OSD] dr) (deferred) · state: the Adam moments as the inner rule lays them out for
    ``state_dtype`` (discrete.inner.InnerRule.layout: float32 8 bytes per element, bf16 4, 8-bit 2 plus
    4 bytes of block scale per 256 elements and moment) of N (AdamW, full-rank parameters) or rk elements
    (projected), plus P 4dr (2dr with ``proj_dtype="bf16"``), OSD's P-optimizer (``proj_optimizer``: Adam's two moments, none for ``gd``) in
    ``proj_state_dtype`` of dr elements, RSO's coordinate B 4rk.
    """
    inner = resolve_inner("adamw", state_dtype)
    p_opt = resolve_proj_optimizer(proj_optimizer, proj_state_dtype)
    w = g = pend = st = 0
    for pname, p in model.named_parameters():
        N = p.numel()
        b = p.element_size()
        w += b * N
        projected = name != "adamw" and is_projected(pname, p)
        if not projected:
            st += layout_bytes(inner.layout(tuple(p.shape)))
            g += 0 if per_layer == "in_backward" else b * N
            continue
        m, n = p.shape
        side = SIDE_RULES["std"](m, n)
        d, k = (m, n) if side == LEFT else (n, m)
        g_hat, P = rank * k, d * rank
        g_shape = (rank, n) if side == LEFT else (m, rank)
        st += layout_bytes(inner.layout(g_shape)) + (2 if proj_dtype == "bf16" else 4) * P
        st += {"galore": 0, "osd": layout_bytes(p_opt.layout((d, rank))), "rso": 4 * g_hat}[name]
        if per_layer == "off":
            g += b * N
        elif per_layer == "deferred":
            pend += 4 * (g_hat + (P if name == "osd" else 0))
    return Analytic(w, g, pend, st)


def state_bytes(opt) -> int:
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if torch.is_tensor(v) and v.ndim > 0)


def grad_bytes(model) -> int:
    return sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)



def provenance(device: str, name: str | None = None) -> dict:
    """Commit, command, versions, threads and device sharing of a row (discrete.validation.provenance.record)."""
    from discrete.validation.provenance import record

    return record(device, name=name)
