"""Our LLaMA (:mod:`discrete.validation.model`) to and from transformers' ``LlamaForCausalLM``.

The two are the same network (pre-norm RMSNorm in float32, RoPE in the ``rotate_half`` convention,
SwiGLU, causal SDPA, no biases, untied head); the parameter names differ only by the ``model.``
prefix HF puts on everything but ``lm_head``. :data:`CONFIG_FIELDS` maps the config fields; the HF
settings our model has no choice for are :data:`FIXED` (multi-head attention with as many key/value
heads as heads, no biases, SiLU, untied embeddings, default RoPE). Tested to give the same logits
(tests/validation/test_hf.py states the tolerance).

``transformers`` is needed only here (``pip install 'osd-theory[export]'``), imported inside the
functions that build an HF model. ``osd-theory export RUN_DIR OUT_DIR`` (:mod:`export_cli`) writes a
run's checkpoint as ``config.json`` + ``model.safetensors``, loadable with
``LlamaForCausalLM.from_pretrained(OUT_DIR)``; :func:`from_hf` / :func:`load_hf` bring HF weights in.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from discrete.validation.model import Llama, LlamaConfig
from osd_theory.errors import UserError

# our LlamaConfig field -> transformers.LlamaConfig attribute
CONFIG_FIELDS = {"dim": "hidden_size", "mlp_dim": "intermediate_size", "n_heads": "num_attention_heads",
                 "n_layers": "num_hidden_layers", "vocab_size": "vocab_size", "norm_eps": "rms_norm_eps",
                 "init_std": "initializer_range", "context": "max_position_embeddings"}
# transformers.LlamaConfig settings that our architecture fixes
FIXED = {"hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False}
INSTALL = "pip install 'osd-theory[export]' (or pip install transformers safetensors)"


def require_transformers():
    try:
        import transformers
    except ImportError as exc:
        raise UserError(f"this needs the transformers package ({exc}); {INSTALL}") from None
    return transformers


# -- names ------------------------------------------------------------------------------------
def hf_name(name: str) -> str:
    """Our parameter name -> HF's (``layers.0.mlp.up_proj.weight`` -> ``model.layers.0.mlp.up_proj.weight``)."""
    return name if name.startswith("lm_head.") else "model." + name


def our_name(name: str) -> str:
    """HF's parameter name -> ours (the inverse of :func:`hf_name`)."""
    return name.removeprefix("model.")


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {hf_name(k): v for k, v in state.items()}


def from_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {our_name(k): v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}


# -- configs ------------------------------------------------------------------------------------
def _rope_theta(hf_config) -> float:
    params = getattr(hf_config, "rope_parameters", None) or {}        # transformers >= 5
    return float(params.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0)))


def hf_config(cfg: LlamaConfig):
    """A ``transformers.LlamaConfig`` of our config (float32, as our weights)."""
    transformers = require_transformers()
    kw = {hf: getattr(cfg, ours) for ours, hf in CONFIG_FIELDS.items()}
    return transformers.LlamaConfig(**kw, **FIXED, num_key_value_heads=cfg.n_heads, rope_theta=cfg.rope_theta,
                                    architectures=["LlamaForCausalLM"])


def our_config(hf_cfg, max_seq_len: int | None = None) -> LlamaConfig:
    """Our LlamaConfig of a ``transformers.LlamaConfig``; UserError naming what our model cannot represent."""
    heads = hf_cfg.num_attention_heads
    head_dim = getattr(hf_cfg, "head_dim", None) or hf_cfg.hidden_size // heads
    rope = getattr(hf_cfg, "rope_parameters", None) or getattr(hf_cfg, "rope_scaling", None) or {}
    unsupported = [f"{k}={getattr(hf_cfg, k, v)!r} (need {v!r})" for k, v in FIXED.items()
                   if getattr(hf_cfg, k, v) != v]
    if (getattr(hf_cfg, "num_key_value_heads", None) or heads) != heads:
        unsupported.append(f"num_key_value_heads={hf_cfg.num_key_value_heads} (grouped-query attention; need {heads})")
    if head_dim * heads != hf_cfg.hidden_size:
        unsupported.append(f"head_dim={head_dim} (need hidden_size / num_attention_heads)")
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        unsupported.append(f"rope_type={rope.get('rope_type', rope.get('type'))!r} (need 'default')")
    if unsupported:
        raise UserError(f"this transformers LlamaConfig has settings our LLaMA does not: {'; '.join(unsupported)}")
    kw = {ours: getattr(hf_cfg, hf) for ours, hf in CONFIG_FIELDS.items()}
    cfg = LlamaConfig(**kw, rope_theta=_rope_theta(hf_cfg))
    return replace(cfg, max_seq_len=max_seq_len or cfg.context)


# -- models -------------------------------------------------------------------------------------
def to_hf(model: Llama):
    """A ``LlamaForCausalLM`` (float32) holding copies of ``model``'s weights."""
    transformers = require_transformers()
    hf = transformers.LlamaForCausalLM(hf_config(model.cfg))
    hf.load_state_dict(to_hf_state_dict(model.state_dict()), strict=True)
    return hf.float().eval()


def from_hf(hf_model, max_seq_len: int | None = None) -> Llama:
    """Our Llama holding copies of a ``LlamaForCausalLM``'s weights (float32)."""
    model = Llama(our_config(hf_model.config, max_seq_len))
    state = {k: v.float() for k, v in from_hf_state_dict(hf_model.state_dict()).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"the transformers model does not fit our LLaMA: missing {missing[:4]}, "
                        f"unexpected {unexpected[:4]}")
    return model


def load_hf(path: str, max_seq_len: int | None = None) -> Llama:
    """Our Llama from a ``save_pretrained`` directory (or hub name) of a LlamaForCausalLM."""
    transformers = require_transformers()
    return from_hf(transformers.LlamaForCausalLM.from_pretrained(path), max_seq_len)


__all__ = ["CONFIG_FIELDS", "FIXED", "from_hf", "hf_config", "load_hf", "our_config", "to_hf"]
