"""Our LLaMA against transformers' LlamaForCausalLM, and ``osd-theory export`` (issue 24, item 4).

Same logits: the same weights in both models, one forward of 2 x 32 tokens, float32, CPU, at the
tiny and the 60M configurations. Tolerance: 4x the float32 round-off of our own model, measured in
the test as |ours(float32) - ours(float64)| (2.4e-7 at tiny, logits ~1): a disagreement within it is
round-off, while a different network (RoPE convention, norm placement, a swapped weight) is off by
O(|logits|). Measured: bit-identical at both sizes (torch 2.13, transformers 5.25, CPU), since both
run the same operations in the same order.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

from discrete.validation import hf
from discrete.validation.checkpoint import load_checkpoint
from discrete.validation.model import Llama, build_model
from osd_theory.cli import main as cli_main
from osd_theory.errors import UserError

transformers = pytest.importorskip("transformers")


def _logits(model, tokens):
    with torch.no_grad():
        return model(tokens)[0] if isinstance(model, Llama) else model(input_ids=tokens).logits


@pytest.mark.parametrize("flavour,vocab", [("tiny", 320), ("60m", 32000)])
def test_same_logits_as_llama_for_causal_lm(flavour, vocab):
    torch.manual_seed(0)
    ours = build_model(flavour, vocab_size=vocab, max_seq_len=64).eval()
    theirs = hf.to_hf(ours)
    assert isinstance(theirs, transformers.LlamaForCausalLM)
    tokens = torch.randint(0, vocab, (2, 32), generator=torch.Generator().manual_seed(1))
    mine, ref = _logits(ours, tokens), _logits(theirs, tokens)
    roundoff = float((mine.double() - _logits(copy.deepcopy(ours).double(), tokens)).abs().max())
    assert 0 < roundoff < 1e-5 * float(mine.abs().max())
    assert float((mine - ref).abs().max()) <= 4 * roundoff            # measured: 0 (bit-identical)
    # and the check can fail: a network that differs in one place is far outside it
    broken = copy.deepcopy(theirs)
    broken.model.layers[0].self_attn.k_proj.weight.data.mul_(-1)
    assert float((mine - _logits(broken, tokens)).abs().max()) > 1e3 * roundoff


def test_import_from_a_transformers_model_round_trips():
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                                      num_attention_heads=4, tie_word_embeddings=False, rope_theta=5000.0,
                                      rms_norm_eps=1e-5, max_position_embeddings=128)
    torch.manual_seed(3)
    theirs = transformers.LlamaForCausalLM(config).eval()
    ours = hf.from_hf(theirs)
    assert (ours.cfg.dim, ours.cfg.mlp_dim, ours.cfg.n_heads, ours.cfg.n_layers, ours.cfg.rope_theta,
            ours.cfg.norm_eps, ours.cfg.max_seq_len) == (32, 80, 4, 2, 5000.0, 1e-5, 128)
    tokens = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(4))
    assert torch.equal(_logits(ours, tokens), _logits(theirs, tokens))
    back = hf.to_hf(ours)
    for (k, a), (k2, b) in zip(theirs.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_import_refuses_what_our_llama_cannot_represent():
    gqa = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
    with pytest.raises(UserError, match="settings our LLaMA does not") as refused:
        hf.from_hf(transformers.LlamaForCausalLM(gqa))
    assert "attention_bias=True" in str(refused.value) and "num_key_value_heads=2" in str(refused.value)


def test_export_cli_writes_a_loadable_model_that_round_trips(make_cfg, tmp_path, capsys):
    from discrete.validation.trainer import train

    cfg = make_cfg(optimizer="galore", steps=3)
    train(cfg)
    out = tmp_path / "exported"
    assert cli_main(["export", cfg.out, str(out)]) == 0
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "osd_theory_export.json").read_text())["step"] == 3
    loaded = transformers.LlamaForCausalLM.from_pretrained(str(out)).eval()
    trained = load_checkpoint(cfg.out)["model"]
    ours = build_model("tiny", vocab_size=trained["embed_tokens.weight"].shape[0], max_seq_len=cfg.seq_len).eval()
    ours.load_state_dict(trained)
    tokens = torch.randint(0, ours.cfg.vocab_size, (2, cfg.seq_len), generator=torch.Generator().manual_seed(5))
    assert torch.equal(_logits(ours, tokens), _logits(loaded, tokens))
    # and back: the exported directory imported into our model gives the checkpoint's weights exactly
    imported = hf.load_hf(str(out), max_seq_len=cfg.seq_len)
    assert trained.keys() == imported.state_dict().keys()
    assert all(torch.equal(v, imported.state_dict()[k]) for k, v in trained.items())
    # a second export into the same directory needs --overwrite (one-line error, exit 2)
    capsys.readouterr()
    assert cli_main(["export", cfg.out, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert cli_main(["export", cfg.out, str(out), "--overwrite"]) == 0


def test_export_of_a_directory_without_a_run_is_a_one_line_error(tmp_path, capsys):
    assert cli_main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a validation run with a checkpoint" in err
    assert not (tmp_path / "out").exists()
