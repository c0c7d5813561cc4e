"""The chunked head + loss (discrete/validation/loss.py) equals the one-piece loss, value and gradients."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from discrete.validation.loss import IGNORE_INDEX, lm_loss
from discrete.validation.model import build_model
from osd_theory.errors import UserError


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), chunk=st.integers(1, 50), ignore=st.booleans(), seed=st.integers(0, 2**16))
def test_chunked_equals_unchunked_in_float64(n, chunk, ignore, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 11, (n,), generator=g)
    if ignore:
        y[::3] = IGNORE_INDEX          # some ignored tokens, possibly a whole chunk of them
    ref = lm_loss(h, w, y, 0)
    gh, gw = torch.autograd.grad(ref, (h, w)) if ref.isfinite() else (None, None)
    got = lm_loss(h, w, y, chunk)
    if not ref.isfinite():             # every target ignored: the mean is 0/0 = nan in both
        assert (y == IGNORE_INDEX).all() and got.isnan()
        return
    # float64 with a different summation order: agreement to ~1e-15 relative; 1e-12 leaves room
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    ch, cw = torch.autograd.grad(got, (h, w))
    torch.testing.assert_close(ch, gh, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cw, gw, rtol=1e-12, atol=1e-12)


def test_model_with_loss_chunk_matches_the_unchunked_model():
    torch.manual_seed(0)
    ref = build_model("tiny", vocab_size=97, max_seq_len=16).double()
    chunked = build_model("tiny", vocab_size=97, max_seq_len=16, loss_chunk=7).double()
    chunked.load_state_dict(ref.state_dict())
    x = torch.randint(0, 97, (3, 16))
    y = torch.randint(0, 97, (3, 16))
    logits, l_ref = ref(x, y)
    none, l_got = chunked(x, y)
    assert logits.shape == (3, 16, 97) and none is None
    torch.testing.assert_close(l_got, l_ref, rtol=1e-12, atol=1e-12)
    l_ref.backward()
    l_got.backward()
    for (name, a), b in zip(ref.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12, msg=name)
    assert chunked(x)[0].shape == (3, 16, 97)      # without targets the logits still come back


def test_negative_chunk_is_refused():
    with pytest.raises(UserError, match="loss_chunk must be >= 0"):
        build_model("tiny", vocab_size=97, max_seq_len=16, loss_chunk=-1)
    with pytest.raises(ValueError, match="loss chunk must be >= 0"):
        lm_loss(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, dtype=torch.long), -2)
