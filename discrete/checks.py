"""Validators for the projection group keys (raise ValueError in torch wording)."""
from __future__ import annotations

from discrete import state as S
from discrete.fused import MATMUL_PRECISION
from discrete.inner import PROJ_OPTIMIZERS
from discrete.projection import PROJ_INIT, SWITCH


def gap(value, group):
    S.check_int("update_proj_gap", value, 1)


def scale(value, group):
    S.check_nonneg("scale", value)


def proj_type(value, group):
    S.check_choice(S.PROJ_TYPES, value)


def nonneg(name):
    return lambda value, group: S.check_nonneg(name, value)


def betas(value, group):
    S.check_betas(value, "proj_betas")


def momentum(value, group):
    S.check_momentum(value)


def proj_optimizer(value, group):
    S.check_choice(PROJ_OPTIMIZERS, value)


def proj_init(value, group):
    S.check_choice(PROJ_INIT, value)


def switch(value, group):
    S.check_choice(SWITCH, value)


def seed(value, group):
    S.check_int("seed", value, 0)


GALORE_KEYS = {
    "update_proj_gap": (200, gap),
    "scale": (1.0, scale),
    "proj_type": ("std", proj_type),
}


def matmul_precision(value, group):
    S.check_choice(MATMUL_PRECISION, value)
