"""Claim C5 with low-precision states (issue 22 item 3): along the iterations of heavy ball (SGD with momentum)
and Adam (no bias correction) whose moments are stored in bf16 or 8 bits, the discrete H_k on the optimizer's
own (dequantised) state is non-increasing below the step-size threshold, and the threshold on the lr grid of
C5 is float32's: the rounding of the state each step does not break the descent on this quadratic.

Measured on the 8×8 quadratic of C5 (condition 100, 200 steps, lr = 2^e for e = −12..1): every lr below the
threshold is monotone for float32, bf16 and int8 alike (the largest step-to-step change of H is a decrease,
≤ −4e-11·|H_0|); heavy ball first increases at lr 1, Adam at 1/4, in all three storages. Here the quick
variant (6×6, 80 steps, every other exponent) as C5's quick run.
"""
from __future__ import annotations

import pytest

from discrete.claims import MOMENTUM, is_monotone, track_h
from discrete.full_rank import AdamW, SGDMomentum
from discrete.inner import resolve_inner
from osd_theory import discrete_steps as ds
from osd_theory.problems import make_problem

# name -> (optimizer factory(params, lr, state_dtype), HD system at lr, HD state from the dequantised moments)
CASES = {
    "heavy_ball": (lambda ps, lr, dt: SGDMomentum(ps, lr=lr, momentum=MOMENTUM, nonfinite="skip", state_dtype=dt),
                   lambda lr: ds.heavy_ball_system(ds.sgd_time_step(lr, MOMENTUM), MOMENTUM),
                   "sgd", lambda S: ((1 - MOMENTUM) * S[0],)),          # M = (1−μ)·torch's buffer
    "adam": (lambda ps, lr, dt: AdamW(ps, lr=lr, weight_decay=0.0, bias_correction=False, nonfinite="skip", state_dtype=dt),
             lambda lr: ds.adam_system(lr, 0.9, 0.999, 1e-8), "adamw", lambda S: tuple(S)),
}


def _monotone_by_lr(name: str, state_dtype: str, exps: list[int]) -> list[bool]:
    problem = make_problem("quadratic", m=6, n=6, seed=0, condition=100.0)
    make, system_of, inner, hd = CASES[name]
    rule = resolve_inner(inner, state_dtype)
    out = []
    for e in exps:
        lr = 2.0 ** e
        H = track_h(problem, lambda ps, lr_: make(ps, lr_, state_dtype), system_of(lr), lr, 80,
                    lambda st: hd(rule.tensors(st)))
        out.append(is_monotone(H))
    return out


@pytest.mark.parametrize("state_dtype", ["bf16", "int8"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_quantised_steps_keep_h_decreasing_below_the_threshold(name, state_dtype):
    exps = list(range(-12, 2, 2))
    ref = _monotone_by_lr(name, "float32", exps)
    got = _monotone_by_lr(name, state_dtype, exps)
    first_fail = ref.index(False)                      # float32: monotone below, increasing from here
    assert all(ref[:first_fail]) and first_fail > 0
    assert got == ref, (got, ref)
