"""galore-torch's eps default (1e-6) against ours (torch's 1e-8): the drift it makes (docs/optimizers.md).

``GaLoreAdamW(groups, lr=1e-2)`` against ``discrete.GaLore(groups, lr=1e-2)`` with and without
``eps=1e-6``, 10 steps on the validation track's tiny LLaMA (attention and MLP linears at rank 16,
scale 0.25, std side), one fixed batch of 8 x 32 random tokens, float32, CPU.

    python benchmarks/galore_eps.py          # a few seconds; needs galore-torch (a test extra)
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from discrete import GaLore  # noqa: E402
from discrete.groups import param_groups  # noqa: E402
from discrete.validation.model import build_model  # noqa: E402


def run(make, steps: int = 10) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model("tiny", vocab_size=256, max_seq_len=32)
    groups = param_groups(model, rank=16, scale=0.25, update_proj_gap=200, proj_type="std")
    for g in groups:
        g.pop("param_names")                    # galore-torch's groups are plain
    tokens = torch.randint(0, 256, (8, 33), generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # galore-torch's deprecation warning
        opt = make(groups)
    for _ in range(steps):
        opt.zero_grad()
        model(tokens[:, :-1], tokens[:, 1:])[1].backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    import galore_torch
    torch.set_num_threads(1)
    ref = run(lambda g: galore_torch.GaLoreAdamW(g, lr=1e-2))
    for label, make in (("GaLore(lr=1e-2)", lambda g: GaLore(g, lr=1e-2)),
                        ("GaLore(lr=1e-2, eps=1e-6)", lambda g: GaLore(g, lr=1e-2, eps=1e-6))):
        print(f"{label}: max |W - W_galore_torch| after 10 steps = {float((run(make) - ref).abs().max()):.1e}")


if __name__ == "__main__":
    main()
