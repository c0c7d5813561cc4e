"""A step is atomic in every executor: what it can reject is rejected before anything changes.

A user projection rule that raises, calls ``sys.exit``, writes into its inputs and then fails, or returns the
wrong type, shape, dtype or device or a non-finite tensor — on the first step (no state yet) or on a later
one — makes ``step()`` raise one
:class:`~discrete.step.checks.StepRejected` (a ValueError) that names the rule and the parameter, and every
weight and every state tensor is bit-identical to before (compared with ``torch.equal``), in the single
(``foreach=False``), batched (default; a user ProjectionRule subclass is batched) and per-layer paths. The
model mixes the failing group with a full-rank group and a GaLore-style group stepped by other rules, so a
step that mutated in order would have moved them first (it did before the step engine: issue 20).
A NaN gradient under ``nonfinite="raise"`` leaves everything as it was too.
"""
from __future__ import annotations

import copy
import textwrap

import pytest
import torch

from discrete import OnlineSubspaceDescent, PerLayer
from discrete.step.checks import StepRejected

FAILURES = {
    "raises": "raise RuntimeError('boom')",
    "exits": "import sys; sys.exit(3)",
    "nan": "return P * float('nan')",
    "shape": "return P[..., :-1]",
    "dtype": "return (P * 0).to(torch.int64)",
    "type": "return [1.0]",
    "device": "return P.to('meta')",
    "writes": "P.mul_(0.5); G.zero_(); raise RuntimeError('boom')",     # into its inputs, then fails
}


def _rule_file(tmp_path, failure: str, at: int) -> str:
    body = FAILURES[failure]
    path = tmp_path / f"rule_{failure}_{at}.py"
    path.write_text(textwrap.dedent(f"""
        import torch

        def gamma(t, P, G):
            if t >= {at}:
                {body}
            Gs = G if P.shape[0] == G.shape[0] else G.mT
            return Gs @ (Gs.mT @ P) / (G.norm() ** 2 + 1e-12) - 0.1 * P
    """))
    return f"{path}:gamma"


def _class_file(tmp_path, at: int) -> str:
    """A user ProjectionRule subclass (batchable: it inherits the default parts C P = G̃G̃ᵀP)."""
    path = tmp_path / f"cls_{at}.py"
    path.write_text(textwrap.dedent(f"""
        from dataclasses import dataclass
        from osd_theory.projections.base import SmoothRule

        @dataclass
        class Failing(SmoothRule):
            name = "failing"

            def field_from_parts(self, t, P, parts):
                if t >= {at}:
                    P.mul_(0.5)                     # writes into its P, then fails
                    raise ArithmeticError("bad field")
                return parts[0] - P
    """))
    return f"{path}:Failing"


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 10), torch.nn.Tanh(), torch.nn.Linear(10, 10), torch.nn.Tanh(),
                               torch.nn.Linear(10, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _opt(model, projection, foreach=None):
    mats = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    biases = [m.bias for m in model if isinstance(m, torch.nn.Linear)]
    groups = [{"params": biases},                                                        # full rank
              {"params": [mats[0], mats[3]], "rank": 1, "projection": "periodic_svd", "update_proj_gap": 1},
              {"params": mats[1:3], "rank": 2, "projection": projection}]
    return OnlineSubspaceDescent(groups, lr=1e-2, weight_decay=0.1, foreach=foreach)


def _backward(model, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 12, generator=g)
    model(x).pow(2).mean().backward()


def _snapshot(model, opt):
    return ([p.detach().clone() for p in model.parameters()], copy.deepcopy(opt.state_dict()),
            [None if p.grad is None else p.grad.clone() for p in model.parameters()])


def _assert_unchanged(before, model, opt):
    params, sd, grads = before
    for a, b in zip(params, model.parameters()):
        assert torch.equal(a, b.detach())
    for g, p in zip(grads, model.parameters()):                 # the gradients too (a rule may write into G)
        assert (g is None) == (p.grad is None)
        if g is not None:
            torch.testing.assert_close(p.grad, g, rtol=0, atol=0, equal_nan=True)
    now = opt.state_dict()
    assert sd["state"].keys() == now["state"].keys()
    for pid, st in sd["state"].items():
        assert st.keys() == now["state"][pid].keys()
        for k, v in st.items():
            assert torch.equal(v, now["state"][pid][k]) if torch.is_tensor(v) else v == now["state"][pid][k], (pid, k)


@pytest.mark.parametrize("foreach", [False, None])
@pytest.mark.parametrize("at", [0, 2])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_user_rule_changes_nothing(tmp_path, failure, at, foreach):
    model = _model()
    opt = _opt(model, _rule_file(tmp_path, failure, at), foreach)
    for s in range(at):
        _backward(model, s)
        opt.step()
        opt.zero_grad()
    _backward(model, at)
    before = _snapshot(model, opt)
    with pytest.raises(StepRejected, match=r"rule_.*gamma.*parameter \d+ \(10×10|rule_.*gamma.*parameter \d+ \(8×10"):
        opt.step()
    _assert_unchanged(before, model, opt)


@pytest.mark.parametrize("at", [0, 2])
def test_a_failing_user_rule_class_changes_nothing_in_the_batched_executor(tmp_path, at):
    model = _model()
    opt = _opt(model, _class_file(tmp_path, at))
    for s in range(at):
        _backward(model, s)
        opt.step()
        opt.zero_grad()
    _backward(model, at)
    assert opt.executor_of(opt.item(model[2].weight, opt.param_groups[2], 3, 2)) == "batched"
    before = _snapshot(model, opt)
    with pytest.raises(StepRejected, match="raised ArithmeticError: bad field"):
        opt.step()
    _assert_unchanged(before, model, opt)


@pytest.mark.parametrize("failure", ["raises", "nan", "exits", "writes"])
def test_per_layer_rejects_in_backward_and_changes_nothing(tmp_path, failure):
    model = _model()
    opt = _opt(model, _rule_file(tmp_path, failure, 1))
    layers = PerLayer(opt)
    _backward(model, 0)
    opt.step()
    opt.zero_grad()
    before = _snapshot(model, opt)
    with pytest.raises(StepRejected, match="rule_"):
        _backward(model, 1)
    layers.discard()
    opt.zero_grad()
    _assert_unchanged(before, model, opt)


@pytest.mark.parametrize("foreach", [False, None])
def test_a_rule_that_writes_into_its_inputs_steps_as_its_pure_twin(tmp_path, foreach):
    """A user rule is handed copies of P and G: writing into them changes neither the state nor the step."""
    path = tmp_path / "writers.py"
    path.write_text(textwrap.dedent("""
        def pure(t, P, G):
            Gs = G if P.shape[0] == G.shape[0] else G.mT
            return Gs @ (Gs.mT @ P) / (G.norm() ** 2 + 1e-12) - 0.1 * P

        def writer(t, P, G):
            out = pure(t, P, G)
            P.zero_()
            G.mul_(2.0)
            return out
    """))
    runs = []
    for fn in ("pure", "writer"):
        model = _model()
        opt = _opt(model, f"{path}:{fn}", foreach)
        for s in range(3):
            _backward(model, s)
            opt.step()
            opt.zero_grad()
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_a_nan_gradient_in_a_later_group_changes_nothing():
    model = _model()
    opt = _opt(model, "oja")
    _backward(model, 0)
    opt.step()
    opt.zero_grad()
    _backward(model, 1)
    model[4].weight.grad[0, 0] = float("nan")          # a matrix of the last group: earlier groups would have moved
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match=r"parameter 7 \(8×10, group 2\) contains NaN or Inf; nothing was stepped"):
        opt.step()
    _assert_unchanged(before, model, opt)
