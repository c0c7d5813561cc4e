"""Large inner steps run on row blocks (discrete.inner.InnerRule._step_in_chunks): the same values as one piece.

A row-blocked step exists to bound temporaries (a 7B embedding bucket's 8-bit state dequantised whole was 4 GB of
float32 copies and int64 indices); it must not change a single bit of U or of the state, for every rowwise rule
and storage, and it must never split a rule that is not rowwise.
"""
import pytest
import torch

from discrete import inner
from discrete.inner import Hyper, resolve_inner


def _run(name: str, dtype: str, shape, steps: int = 3):
    rule = resolve_inner(name, dtype)
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=g) * 10 ** torch.randint(-4, 1, (), generator=g).item() for _ in range(steps)]
    state = rule.init_state(grads[0])
    hp = Hyper(lr=1e-2, momentum=0.9)
    out = [rule.step(state, G, hp, k + 1) for k, G in enumerate(grads)]
    return out, state


@pytest.mark.parametrize("name", ["adamw", "lion", "sgd"])
@pytest.mark.parametrize("dtype", ["float32", "bf16", "int8"])
@pytest.mark.parametrize("shape", [(3, 37, 300), (70, 513)])
def test_row_blocks_equal_one_piece(monkeypatch, name, dtype, shape):
    whole_U, whole_state = _run(name, dtype, shape)
    calls = []
    real = inner.InnerRule._step_in_chunks
    monkeypatch.setattr(inner.InnerRule, "_step_in_chunks",
                        lambda self, *a: calls.append(a[-1]) or real(self, *a))
    monkeypatch.setattr(inner, "CHUNK_ENTRIES", 1000)          # blocks of 3 (n=300) or 1 (n=513) rows
    block_U, block_state = _run(name, dtype, shape)
    assert calls and calls[0] == max(1, 1000 // shape[-1])      # it did run in blocks
    for a, b in zip(whole_U, block_U):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert whole_state.keys() == block_state.keys()
    for key in whole_state:
        assert torch.equal(whole_state[key], block_state[key]), key


def test_rules_with_whole_matrix_reductions_are_never_split(monkeypatch):
    monkeypatch.setattr(inner, "CHUNK_ENTRIES", 10)
    muon = resolve_inner("muon")
    G = torch.randn(40, 30)
    assert inner._row_chunks(muon, muon.init_state(G), G, "") is None
    adam = resolve_inner("adamw")
    assert inner._row_chunks(adam, adam.init_state(G), G, "") == 1
    assert inner._row_chunks(adam, adam.init_state(G), G.mT, "") is None     # not contiguous: one piece
    custom = inner.InnerRule("normalised", ("exp_avg",), lambda S, g, **_: -g / g.norm())
    assert not custom.rowwise and inner._row_chunks(custom, {"exp_avg": torch.zeros(40, 30)}, G, "") is None


@pytest.mark.parametrize("state_dtype", ["int8", "bf16"])
def test_low_precision_full_rank_buckets_step_one_by_one_with_the_same_values(monkeypatch, state_dtype):
    """A large full-rank bucket with 8-bit or bf16 states steps tensor by tensor (no stacked G, no bucket-sized
    float32 U: discrete/step/batched._one_by_one), giving the stacked step's weights and states bit for bit."""
    from discrete import AdamW
    from discrete.step import batched

    def run(dtype: str = state_dtype):
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(40, 300, generator=g)) for _ in range(4)]
        opt = AdamW(params, lr=1e-2, state_dtype=dtype)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return params, opt

    taken = []
    real = batched._one_by_one
    monkeypatch.setattr(batched, "_one_by_one", lambda b: taken.append(real(b)) or taken[-1])
    stacked_params, stacked_opt = run()
    assert taken and not any(taken)                          # 4 x 12,000 entries: one stacked step
    taken.clear()
    monkeypatch.setattr(inner, "CHUNK_ENTRIES", 20_000)
    split_params, split_opt = run()
    assert taken and all(taken)                              # now larger than a block: one by one
    taken.clear()
    run("float32")
    assert taken and not any(taken)                          # float32 states keep the stacked step
    for a, b in zip(stacked_params, split_params):
        assert torch.equal(a, b)
    for pa, pb in zip(stacked_params, split_params):
        sa, sb = stacked_opt.state[pa], split_opt.state[pb]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k]))
