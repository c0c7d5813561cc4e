"""discrete.AdamW takes torch.optim.AdamW's checkpoints (issue 21, item 9).

* a torch.optim.AdamW state dict loads (its ``amsgrad``, ``capturable``, ``differentiable``, ``fused`` keys at
  the values that mean this optimizer; before, ``amsgrad`` was an unknown key: a regression), and training
  continues on torch's trajectory: 5 more steps agree with torch's own to 1e-6 relative (float32 round-off of
  the same formula: torch's for-loop AdamW against the batched executor);
* ``amsgrad=True`` is refused by name, with nothing loaded.
"""
from __future__ import annotations

import pytest
import torch

from discrete import AdamW


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(6, 5, generator=g)), torch.nn.Parameter(torch.randn(5, generator=g))]


def _grads(ps, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g)


def test_a_torch_adamw_checkpoint_loads_and_continues_its_trajectory():
    ref, ours = _params(), _params()
    t_ref = torch.optim.AdamW(ref, lr=1e-2, foreach=False)
    t_src = torch.optim.AdamW(ours, lr=1e-2, foreach=False)
    for s in range(3):
        _grads(ref, s), _grads(ours, s)
        t_ref.step(), t_src.step()
    opt = AdamW(ours, lr=1e-2, weight_decay=0.01)     # torch's default decay (ours defaults to 0)
    opt.load_state_dict(t_src.state_dict())
    for s in range(3, 8):
        _grads(ref, s), _grads(ours, s)
        t_ref.step(), opt.step()
    for a, b in zip(ref, ours):
        assert float((a - b).norm() / a.norm()) < 1e-6


def test_amsgrad_is_refused_by_name_and_nothing_loads():
    src = torch.optim.AdamW(_params(), amsgrad=True)
    opt = AdamW(_params())
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"amsgrad=True is not supported.*nothing was loaded"):
        opt.load_state_dict(src.state_dict())
    assert opt.state_dict() == before


@pytest.mark.parametrize("cls", ["AdamW", "GaLore", "OnlineSubspaceDescent", "RSO"])
def test_meta_device_parameters_are_refused(cls):
    """An optimizer built on a meta-device model refuses to step with one line naming the fix, with or without
    gradients, and changes nothing: after ``to_empty`` (new Parameter objects) it would otherwise step nothing,
    silently, for the whole run (torch.optim.AdamW does exactly that)."""
    import discrete
    from discrete.state import OptimizerInputError

    with torch.device("meta"):
        lazy = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 4))
    w, rest = [lazy[0].weight, lazy[1].weight], [lazy[0].bias, lazy[1].bias]
    groups = [{"params": rest}, {"params": w, "rank": 2}] if cls != "AdamW" else [{"params": w + rest}]
    opt = getattr(discrete, cls)(groups, lr=1e-2)
    for p in lazy.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.raises(OptimizerInputError, match="meta device.*to_empty.*build the optimizer"):
        opt.step()
    assert len(opt.state) == 0
    lazy.to_empty(device="cpu")                        # new Parameter objects: the optimizer still holds meta ones
    for p in lazy.parameters():
        p.grad = torch.ones_like(p)
    with pytest.raises(OptimizerInputError, match="parameter 0 .*meta device"):
        opt.step()
