"""LLaMA in plain torch, nanoGPT-shaped: attention -> MLP -> block -> config -> model.

Architecture as in the GaLore / OSD pretraining code (HF ``LlamaForCausalLM``):
pre-norm RMSNorm, rotary position embeddings on q and k, SwiGLU MLP, causal attention
through :func:`torch.nn.functional.scaled_dot_product_attention`, no biases, and an
**untied** output head (``tie_word_embeddings=False`` in the GaLore LLaMA configs).

Shapes: B batch, T sequence, C hidden (``dim``), nh heads, hs = C / nh head size, V vocab.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from discrete.validation.loss import cross_entropy, lm_loss
from osd_theory.errors import UserError
from osd_theory.registry import Registry


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in float32 (as HF LLaMA)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_tables(seq_len: int, head_size: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (T, hs/2) for rotary embeddings (Su et al., arXiv:2104.09864)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)  # (hs/2,)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i+hs/2}) by the position angle (HF ``rotate_half`` convention).

    x: (B, nh, T, hs); cos, sin: (T, hs/2).
    """
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: "LlamaConfig"):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_heads
        q = self.q_proj(x).view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v_proj(x).view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, nh, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.o_proj(y)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)) (Shazeer, arXiv:2002.05202)."""

    def __init__(self, cfg: "LlamaConfig"):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.mlp_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.mlp_dim, bias=False)
        self.down_proj = nn.Linear(cfg.mlp_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: "LlamaConfig"):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


@dataclass(frozen=True)
class LlamaConfig:
    dim: int = 512  # hidden size C
    mlp_dim: int = 1376  # SwiGLU inner size
    n_heads: int = 8
    n_layers: int = 8
    vocab_size: int = 32000  # set from the tokenizer at build time
    max_seq_len: int = 256  # RoPE table length; longer inputs are refused
    # the longest sequence the flavour is meant for (GaLore's LLaMA configs: max_sequence_length 1024);
    # the trainer refuses a longer --seq-len (attention cost grows as T^2)
    context: int = 1024
    norm_eps: float = 1e-6
    init_std: float = 0.02  # HF LLaMA initializer_range
    rope_theta: float = 10000.0
    # not architecture but memory layout: tokens per piece of the head + loss (discrete/validation/loss.py);
    # 0 = one piece. With targets and a chunk, forward returns no logits (they are never all alive at once).
    loss_chunk: int = 0


# Named sizes: GaLore's LLaMA configs (arXiv:2403.03507). "tiny" is for tests and CPU smoke runs.
FLAVOURS: Registry[LlamaConfig] = Registry("model")
FLAVOURS.add("tiny", LlamaConfig(dim=64, mlp_dim=176, n_heads=4, n_layers=2))
FLAVOURS.add("60m", LlamaConfig(dim=512, mlp_dim=1376, n_heads=8, n_layers=8))
FLAVOURS.add("130m", LlamaConfig(dim=768, mlp_dim=2048, n_heads=12, n_layers=12))
FLAVOURS.add("350m", LlamaConfig(dim=1024, mlp_dim=2736, n_heads=16, n_layers=24))
FLAVOURS.add("1b", LlamaConfig(dim=2048, mlp_dim=5461, n_heads=32, n_layers=24))
FLAVOURS.add("7b", LlamaConfig(dim=4096, mlp_dim=11008, n_heads=32, n_layers=32))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        if cfg.dim % cfg.n_heads or (cfg.dim // cfg.n_heads) % 2:
            raise UserError(f"hidden {cfg.dim} must split into {cfg.n_heads} heads of even size")
        if cfg.loss_chunk < 0:
            raise UserError(f"loss_chunk must be >= 0 tokens (0 = unchunked), got {cfg.loss_chunk}")
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)  # untied
        cos, sin = rope_tables(cfg.max_seq_len, cfg.dim // cfg.n_heads, cfg.rope_theta)
        # non-persistent: derived from the config, so not in checkpoints
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # N(0, 0.02) for every linear and embedding, as HF LlamaPreTrainedModel._init_weights
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.init_std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx, targets: (B, T) int64. Returns logits (B, T, V) and the mean cross-entropy (or None);
        with targets and ``cfg.loss_chunk`` > 0 the logits are None (the loss is computed in chunks)."""
        B, T = idx.shape
        if T > self.cfg.max_seq_len:
            raise UserError(f"sequence length {T} exceeds the model's max_seq_len {self.cfg.max_seq_len}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, hs/2)
        x = self.embed_tokens(idx)  # (B, T, C)
        for block in self.layers:
            x = block(x, cos, sin)
        h = self.norm(x)
        if targets is not None and self.cfg.loss_chunk:
            return None, lm_loss(h, self.lm_head.weight, targets, self.cfg.loss_chunk)
        logits = self.lm_head(h)  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(name: str, *, vocab_size: int, max_seq_len: int, **overrides) -> Llama:
    """The flavour ``name`` with the tokenizer's vocabulary and the run's sequence length."""
    cfg = replace(FLAVOURS.get(name), vocab_size=vocab_size, max_seq_len=max_seq_len, **overrides)
    return Llama(cfg)


def flops_per_token(cfg: LlamaConfig, seq_len: int) -> float:
    """Training FLOPs per token, 6N + 12·L·C·T (Kaplan et al. / PaLM appendix B), for MFU."""
    n = cfg.n_layers * (4 * cfg.dim**2 + 3 * cfg.dim * cfg.mlp_dim) + cfg.dim * cfg.vocab_size
    return 6 * n + 12 * cfg.n_layers * cfg.dim * seq_len


__all__ = ["FLAVOURS", "Llama", "LlamaConfig", "build_model", "flops_per_token"]
