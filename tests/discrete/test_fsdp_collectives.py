"""FSDP2: the collectives of a step are batched over its matrices, not issued per matrix (issue 20, item 4).

Two gloo processes count the ``all_reduce`` / ``all_gather`` calls made inside one regular ``step()`` (no refresh)
of OSD (online PCA, P on both sides) and of GaLore, for a model of 2 and of 6 projected matrices per side: the
count must not grow with the number of matrices (before, each matrix issued its own: 2–3 per matrix).
"""
from __future__ import annotations

import os
import socket

import pytest
import torch

from two_processes import leave, start

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(blocks: int) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for _ in range(blocks):             # 12 x 8 (P on the right: n = 8 < m) and 8 x 12 (P on the left)
        layers += [torch.nn.Linear(8, 12), torch.nn.Tanh(), torch.nn.Linear(12, 8), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers)


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from discrete import GaLore, OnlineSubspaceDescent

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    counts = {}
    real = {name: getattr(dist, name) for name in ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast")}
    calls = []
    for name, fn in real.items():
        setattr(dist, name, (lambda n, f: lambda *a, **k: calls.append(n) or f(*a, **k))(name, fn))
    for cls in (OnlineSubspaceDescent, GaLore):
        for blocks in (1, 3):
            model = _model(blocks)
            for m in model:
                if isinstance(m, torch.nn.Linear):
                    fully_shard(m)
            fully_shard(model)
            mats = [p for p in model.parameters() if p.ndim == 2]
            rest = [p for p in model.parameters() if p.ndim != 2]
            opt = cls([{"params": rest}, {"params": mats, "rank": 2, "update_proj_gap": 100}], lr=1e-2)
            g = torch.Generator().manual_seed(rank)
            for step in range(3):
                model(torch.randn(4, 8, generator=g)).pow(2).mean().backward()
                calls.clear()
                opt.step()
                opt.zero_grad()
            counts[(cls.__name__, blocks)] = list(calls)       # the third step: no refresh
    if rank == 0:
        torch.save(counts, out)
    leave()


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with gloo")
    root = tmp_path_factory.mktemp("coll")
    out = str(root / "counts.pt")
    start(_worker, (_free_port(), out), root / "logs", WORLD)
    return torch.load(out)


@pytest.mark.parametrize("optimizer", ["OnlineSubspaceDescent", "GaLore"])
def test_collectives_per_step_do_not_grow_with_the_matrices(counts, optimizer):
    few, many = counts[(optimizer, 1)], counts[(optimizer, 3)]
    assert few and len(few) == len(many), (few, many)
    assert len(many) <= 6, many          # norms, the P gather, one all-reduce of the parts, agreement (+ dtype split)
