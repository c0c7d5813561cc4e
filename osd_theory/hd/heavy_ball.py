"""Heavy-ball momentum as an HD system (THEORY.md §3.1; OSD Ex. 2.1 / 4.1).

.. math::
    \\dot W = -P\\hat M,\\qquad \\dot{\\hat M} = a(\\hat G - \\hat M),\\qquad
    H = L + \\frac{\\|\\hat M\\|^2}{2a},\\qquad \\dot H = -\\|\\hat M\\|^2 .

Discrete (Euler, h = lr ε): ``M ← βM + (1−β)Ĝ`` then ``W ← W − ε P M`` with
``a = (1−β)/ε``. Condition: a > 0.
"""
from __future__ import annotations

from dataclasses import dataclass

from osd_theory.hd.base import Condition, HDSystem, _require


@dataclass(frozen=True)
class HeavyBall(HDSystem):
    a: float = 1.0  # relaxation rate of the momentum (1/time); a = (1−β)/lr

    name = "heavy_ball"
    state_names = ("exp_avg",)

    def __post_init__(self):
        super().__post_init__()
        _require(self.a > 0, f"heavy_ball needs a > 0, got a={self.a}")

    @classmethod
    def from_discrete(cls, lr: float, momentum: float) -> "HeavyBall":
        return cls(a=(1.0 - momentum) / lr)

    def relaxation(self, t, S, g_hat):
        return ((g_hat, self.a),)                        # Ṁ = a(Ĝ − M)

    def direction(self, t, S, g_hat, W=None):
        (m,) = S
        return -m                                        # Ẇ = −P M

    def kinetic(self, t, S, W=None):
        (m,) = S
        return m.pow(2).sum() / (2 * self.a)             # ‖M‖²/2a

    def dissipation(self, t, S, g_hat, W=None):
        (m,) = S
        return m.pow(2).sum()                            # Δ = ‖M‖²

    def condition(self):
        return Condition(self.a > 0, f"a > 0: a = {self.a:g}")
