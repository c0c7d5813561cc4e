"""The optimizer table (torch's OptimizerInfo, in small): one row per (optimizer, kwargs)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import torch

from discrete import RSO, AdamW, GaLore, Lion, OnlineSubspaceDescent, SGDMomentum


@dataclass(frozen=True)
class Row:
    name: str
    cls: type
    kwargs: dict = field(default_factory=dict)       # constructor keywords
    proj: dict | None = None                         # keys of the projected group (None: full rank)

    def __repr__(self):
        return self.name


P2 = {"rank": 2, "update_proj_gap": 3, "scale": 1.0}
TABLE = [
    Row("adamw", AdamW, {"lr": 1e-2, "weight_decay": 0.0}),          # the default is torch's 0.01: adamw_wd decays
    Row("adamw_wd", AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    Row("lion", Lion, {"lr": 3e-3}),
    Row("sgd", SGDMomentum, {"lr": 1e-2, "momentum": 0.9}),
    Row("osd_std", OnlineSubspaceDescent, {"lr": 1e-2}, {**P2, "proj_type": "std"}),
    Row("osd_reverse_std", OnlineSubspaceDescent, {"lr": 1e-2}, {**P2, "proj_type": "reverse_std", "pca_lambda": 0.0}),
    Row("osd_left_random", OnlineSubspaceDescent, {"lr": 1e-2}, {**P2, "proj_type": "left", "proj_init": "random"}),
    Row("osd_right_wd", OnlineSubspaceDescent, {"lr": 1e-2, "weight_decay": 0.05},
        {**P2, "proj_type": "right", "proj_weight_decay": 0.01}),
    Row("osd_lion_sgdP", OnlineSubspaceDescent, {"lr": 3e-3, "betas": (0.9, 0.99), "inner": "lion"},
        {**P2, "proj_optimizer": "sgd", "proj_momentum": 0.9}),
    Row("osd_sgd_lionP", OnlineSubspaceDescent, {"lr": 1e-2, "inner": "sgd", "momentum": 0.9},
        {**P2, "proj_optimizer": "lion", "alpha": 0.5}),
    Row("osd_gdP_foreach", OnlineSubspaceDescent, {"lr": 1e-2, "foreach": True}, {**P2, "proj_optimizer": "gd", "alpha": 1.0}),
    Row("osd_foreach", OnlineSubspaceDescent, {"lr": 1e-2, "foreach": True}, {**P2}),
    Row("osd_foreach_bf16mm", OnlineSubspaceDescent, {"lr": 1e-2, "foreach": True}, {**P2, "matmul_precision": "bf16"}),
    Row("galore_foreach", GaLore, {"lr": 1e-2, "foreach": True}, {**P2, "scale": 0.25}),
    Row("galore_std", GaLore, {"lr": 1e-2}, {**P2, "proj_type": "std", "scale": 0.25}),
    Row("galore_rotate", GaLore, {"lr": 1e-2}, {**P2, "proj_type": "left", "switch": "rotate"}),
    Row("galore_reset", GaLore, {"lr": 1e-2}, {**P2, "proj_type": "right", "switch": "reset"}),
    Row("galore_lion", GaLore, {"lr": 3e-3, "inner": "lion"}, {**P2}),
    Row("rso_haar", RSO, {"lr": 1e-2}, {**P2}),
    Row("rso_gaussian_prox", RSO, {"lr": 1e-2}, {**P2, "proj_dist": "gaussian", "rso_prox": 0.1, "proj_type": "left"}),
]
PROJECTED = [r for r in TABLE if r.proj is not None]


def make_model(seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 6), torch.nn.Tanh(),
                               torch.nn.Linear(6, 2)).to(dtype)


def data(dtype=torch.float32):
    g = torch.Generator().manual_seed(123)
    X = torch.randn(32, 7, generator=g).to(dtype)
    return X, torch.tanh(X[:, :2] * 2).to(dtype)


def groups(model: torch.nn.Module, row: Row) -> list[dict]:
    if row.proj is None:
        return [{"params": list(model.parameters())}]
    mats = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    return [{"params": rest}, {"params": mats, **row.proj}]


def build(row: Row, model: torch.nn.Module, **over):
    return row.cls(groups(model, row), **{**row.kwargs, **over})


def loss_fn(model, X, Y):
    return ((model(X) - Y) ** 2).mean()


def train(model, opt, steps, scheduler=None):
    X, Y = data(next(model.parameters()).dtype)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model, X, Y)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(float(loss.detach()))
    return losses


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().float() for p in model.parameters()])


def roundtrip(sd):
    """``sd`` through ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint would go."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)
