"""discrete.groups.param_groups keeps HF Trainer's weight-decay split (issue 24, item 2).

Trainer builds two groups itself (decay / no decay, ``Trainer.get_decay_parameter_names``: no decay
on biases, norm weights and the parameters of ``nn.LayerNorm``); given our groups under ``"params"``
it uses ours, so ours must keep that split inside the projected and the full-rank groups. Checked
against Trainer's own function on two models (LLaMA: RMSNorm by name; GPT-2: LayerNorm modules named
``ln_*`` and biases everywhere), and through a Trainer run.
"""
from __future__ import annotations

import pytest
import torch

from discrete import GaLore
from discrete.groups import decay_parameter_names, param_groups


def _models():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, attention_bias=True))
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2,
                                                                n_head=4))
    return {"llama": (llama, ("self_attn", "mlp")), "gpt2": (gpt2, ("attn", "mlp"))}


def _trainer_decay_names(model):
    """Trainer's names, as ``named_parameters()`` names them (GPT-2's tied lm_head.weight is wte.weight there)."""
    transformers = pytest.importorskip("transformers")
    return set(transformers.Trainer.get_decay_parameter_names(None, model)) & set(dict(model.named_parameters()))


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_decay_names_are_trainers(name):
    model, _ = _models()[name]
    expected = _trainer_decay_names(model)
    assert decay_parameter_names(model) == expected
    assert any("bias" in n for n, _ in model.named_parameters() if n not in expected)   # the split is not empty


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_every_group_decays_exactly_trainers_parameters(name):
    model, targets = _models()[name]
    expected = _trainer_decay_names(model)
    groups = param_groups(model, rank=4, target_modules=targets, weight_decay=0.1, clip_rank=True)
    opt = GaLore(groups, lr=1e-2, weight_decay=0.5)                 # the optimizer's default is not used
    named = {id(p): n for n, p in model.named_parameters()}
    decay = {named[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert set(decay) == set(named.values())
    assert {n for n, wd in decay.items() if wd == 0.1} == expected
    assert {n for n, wd in decay.items() if wd == 0.0} == set(named.values()) - expected
    assert any("rank" in g and g["weight_decay"] == 0.1 for g in opt.param_groups)
    assert any("rank" not in g and g["weight_decay"] == 0.0 for g in opt.param_groups)
    # without a weight_decay the decayed groups take the optimizer's, the others still 0
    opt = GaLore(param_groups(model, rank=4, target_modules=targets, clip_rank=True), lr=1e-2, weight_decay=0.5)
    assert {named[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.5 for p in g["params"]} == expected


def test_trainer_run_keeps_the_split(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    model, targets = _models()["llama"]
    expected = _trainer_decay_names(model)

    class Tokens(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            ids = torch.randint(0, 64, (8,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": ids}

    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                                          use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                                          logging_strategy="no", weight_decay=0.1)
    groups = param_groups(model, rank=4, update_proj_gap=2)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(),
                                   optimizer_cls_and_kwargs=(GaLore, {"params": groups, "lr": 1e-3,
                                                                      "weight_decay": args.weight_decay}))
    trainer.train()
    opt = trainer.optimizer.optimizer
    named = {id(p): n for n, p in model.named_parameters()}
    assert {named[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]} == expected
    assert any("proj" in opt.state[p] for p in model.parameters())
