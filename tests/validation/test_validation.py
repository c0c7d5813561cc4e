"""The LLaMA validation track on CPU: end to end per optimizer, exact resume, DDP parity, caching, errors."""
from __future__ import annotations

import lzma
import math
import os
import socket

import pytest
import torch

from discrete.validation import metrics as M
from discrete.validation.checkpoint import CHECKPOINT_NAME
from discrete.validation.config import RunConfig
from discrete.validation.model import FLAVOURS, build_model
from discrete.validation.runlog import read_log
from discrete.validation.trainer import lr_factor, train
from osd_theory.cli import main as cli_main
from osd_theory.errors import UserError


def _has_discrete() -> bool:
    import discrete

    return hasattr(discrete, "OPTIMIZERS")


needs_discrete = pytest.mark.skipif(not _has_discrete(), reason="discrete optimizers not available")
SUBSPACE = [pytest.param(name, marks=needs_discrete) for name in ("galore", "osd", "rso")]


# ---------------------------------------------------------------- model


def test_model_shapes_and_causality():
    torch.manual_seed(0)
    model = build_model("tiny", vocab_size=50, max_seq_len=12)
    x = torch.randint(0, 50, (2, 12))
    logits, loss = model(x, x)
    assert logits.shape == (2, 12, 50) and loss.ndim == 0
    x2 = x.clone()
    x2[:, 8:] = (x2[:, 8:] + 1) % 50  # change the future only
    assert torch.allclose(model(x2)[0][:, :8], logits[:, :8], atol=1e-6)
    assert not torch.allclose(model(x2)[0][:, 8:], logits[:, 8:])


def test_named_sizes_match_galore_configs():
    # (hidden, mlp, heads, layers) from ANCHORS.md; 60M with vocab 32000 has ~58M parameters
    expect = {"60m": (512, 1376, 8, 8), "130m": (768, 2048, 12, 12), "350m": (1024, 2736, 16, 24),
              "1b": (2048, 5461, 32, 24), "7b": (4096, 11008, 32, 32)}
    for name, shape in expect.items():
        c = FLAVOURS.get(name)
        assert (c.dim, c.mlp_dim, c.n_heads, c.n_layers) == shape
    n = build_model("60m", vocab_size=32000, max_seq_len=256).num_params()
    assert 57e6 < n < 60e6


def test_lr_schedule_warmup_then_cosine_to_ten_percent():
    cfg = RunConfig(steps=100)
    assert lr_factor(1, cfg) == pytest.approx(0.1)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    assert all(lr_factor(s, cfg) >= lr_factor(s + 1, cfg) for s in range(10, 100))


# ---------------------------------------------------------------- metrics


def test_metrics_residual_drift_kinetic():
    torch.manual_seed(0)
    Q = torch.linalg.qr(torch.randn(8, 3))[0]
    G_in = Q @ torch.randn(3, 5)  # in span(Q) on the left
    p = torch.nn.Parameter(torch.zeros(8, 5))
    p.grad = G_in
    assert M.projection_residual([p], {id(p): (Q, 0)}) == pytest.approx(0.0, abs=1e-6)
    p.grad = (torch.eye(8) - Q @ Q.T) @ torch.randn(8, 5)  # orthogonal to it
    assert M.projection_residual([p], {id(p): (2 * Q, 0)}) == pytest.approx(1.0, abs=1e-6)  # scale-free in P
    R = torch.linalg.qr(torch.randn(5, 2))[0]
    p.grad = torch.randn(8, 2) @ R.T  # rows in span(R): right side
    assert M.projection_residual([p], {id(p): (R, 1)}) == pytest.approx(0.0, abs=1e-6)
    assert M.subspace_drift({0: (Q, 0)}, {0: (Q @ torch.linalg.qr(torch.randn(3, 3))[0], 0)})["mean"] == pytest.approx(0, abs=1e-6)
    Q_perp = torch.linalg.qr(torch.cat([Q, torch.randn(8, 3)], 1))[0][:, 3:]
    assert M.subspace_drift({0: (Q, 0)}, {0: (Q_perp, 0)})["mean"] == pytest.approx(1, abs=1e-6)
    # K = (1/2a) <m/(sqrt v + e), m>, a = (1 - beta1)/lr (THEORY 3.2)
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([w], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    opt.state[w] = {"exp_avg": torch.tensor([1.0, -2.0, 0.0]), "exp_avg_sq": torch.tensor([4.0, 1.0, 1.0])}
    k = (1 / (2 * (0.1 / 0.1))) * (1 / (2 + 1e-8) + 4 / (1 + 1e-8))
    assert M.hamiltonian_proxy(1.5, opt) == pytest.approx({"H": 1.5 + k, "K": k})


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("optimizer", ["adamw", *SUBSPACE])
def test_end_to_end_each_optimizer(make_cfg, optimizer):
    lr = 3e-3 if optimizer == "adamw" else 2e-2
    out = train(make_cfg(optimizer=optimizer, steps=12, lr=lr, scale=1.0, log_every=4))
    log = read_log(make_cfg().out)
    steps = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in steps] == [1, 4, 8, 12]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["H"]) and r["K"] >= 0 for r in steps)
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.05  # it learns something in 12 steps
    assert math.isfinite(out["val_ppl"]) and out["val_ppl"] < 320  # better than uniform over the vocab
    sb = steps[-1]["state_bytes"]
    assert sb["params"] > 0 and sb["moments"] > 0
    if optimizer in ("galore", "osd"):
        assert sb["projector"] > 0
        assert 0 <= steps[-1]["residual"] <= 1 and 0 <= steps[-1]["drift_step"] <= 1
    if optimizer == "osd":
        assert sb["projector_optim"] > 0


def test_chunked_loss_trains_as_the_one_piece_loss(make_cfg, tmp_path):
    # --loss-chunk changes only the summation order of the loss and its gradient (float32 round-off per
    # step, then amplified a little by 6 steps of Adam): the logged losses agree to 1e-4 relative
    runs = {}
    for chunk in (0, 48):                          # 48 tokens: pieces that cut across sequences of 64
        cfg = make_cfg(optimizer="galore", steps=6, log_every=2, loss_chunk=chunk, out=str(tmp_path / f"c{chunk}"))
        train(cfg)
        runs[chunk] = [(r["step"], r["loss"]) for r in read_log(cfg.out) if r["kind"] == "train"]
    assert [s for s, _ in runs[48]] == [s for s, _ in runs[0]] == [1, 2, 4, 6]
    for (_, a), (_, b) in zip(runs[0], runs[48]):
        assert b == pytest.approx(a, rel=1e-4)


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize("optimizer", ["adamw", *SUBSPACE[:2]])
def test_resume_is_bit_exact(make_cfg, tmp_path, optimizer, assert_same_run):
    # gap 3: GaLore refreshes its SVD basis at the resumed step, so the refresh state must survive too
    full = make_cfg(optimizer=optimizer, steps=5, out=str(tmp_path / "full"), log_every=2)
    train(full)
    part = make_cfg(optimizer=optimizer, steps=5, out=str(tmp_path / "part"), log_every=2, stop_after=3)
    train(part)
    assert torch.load(tmp_path / "part" / CHECKPOINT_NAME, weights_only=True)["step"] == 3
    part.stop_after, part.resume = None, True
    train(part)
    assert_same_run(full.out, part.out)


def test_drift_window_says_where_it_starts_also_after_a_resume(make_cfg, tmp_path):
    # the projectors of the last log step before an interruption are not checkpointed, so the first
    # window after a resume starts at the resume step; the record says so instead of implying step 2
    full = make_cfg(optimizer="osd", steps=6, out=str(tmp_path / "full"), log_every=2)
    train(full)
    part = make_cfg(optimizer="osd", steps=6, out=str(tmp_path / "part"), log_every=2, stop_after=3)
    train(part)
    part.stop_after, part.resume = None, True
    train(part)
    since = {name: {r["step"]: r.get("drift_window_since") for r in read_log(cfg.out) if r["kind"] == "train"}
             for name, cfg in (("full", full), ("part", part))}
    assert since["full"] == {1: None, 2: 1, 4: 2, 6: 4}
    assert since["part"][4] == 3 and since["part"][6] == 4


# ---------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: RunConfig) -> None:
    from discrete.validation.distributed import exit_process

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(cfg)             # ends with teardown; then leave without finalization (gloo can abort there, CI)
    exit_process(0)


def test_ddp_two_gloo_processes_match_one_process(make_cfg, tmp_path):
    one = make_cfg(steps=4, out=str(tmp_path / "one"), micro_batch_size=2)  # 2 micro-batches of 2
    train(one)
    two = make_cfg(steps=4, out=str(tmp_path / "two"))  # 2 processes x 2 sequences
    # spawn, not fork: a child forked after the parent ran OpenMP regions can hang in its first parallel op (seen in CI)
    torch.multiprocessing.start_processes(_ddp_worker, args=(2, _free_port(), two), nprocs=2, join=True,
                                          start_method="spawn")
    a, b = read_log(one.out), read_log(two.out)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "val_loss", "grad_norm"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-5), (ra["step"], key)
    assert read_log(two.out)[0].get("loss") is not None


# ---------------------------------------------------------------- data and caching


def test_tokenizer_and_token_cache_round_trip(corpus_dir, tmp_path, monkeypatch):
    from discrete.validation import data, tokenizer
    from discrete.validation.corpus import find_split, read_documents

    train_files = find_split(corpus_dir, "train")
    tok, key = tokenizer.load_or_train_tokenizer(train_files, 300, None, tmp_path, log=lambda *a: None)
    ids = data.load_or_encode(train_files, tok, key, None, tmp_path, log=lambda *a: None)
    assert ids.dtype.name == "uint16" and len(ids) > 1000
    doc0 = read_documents(train_files)[0]
    assert tok.decode(list(map(int, ids[: int((ids == tok.token_to_id("<|doc|>")).argmax())]))) == doc0

    def boom(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(tokenizer, "train_tokenizer", boom)
    monkeypatch.setattr(data, "encode_documents", boom)
    tok2, key2 = tokenizer.load_or_train_tokenizer(train_files, 300, None, tmp_path, log=lambda *a: None)
    ids2 = data.load_or_encode(train_files, tok2, key2, None, tmp_path, log=lambda *a: None)
    assert key2 == key and (ids2 == ids).all()
    with pytest.raises(AssertionError, match="cache miss"):  # another vocab size is another key
        tokenizer.load_or_train_tokenizer(train_files, 310, None, tmp_path, log=lambda *a: None)


def test_train_stream_is_a_permutation_per_epoch():
    from discrete.validation.data import TrainStream

    s = TrainStream(torch.arange(101).numpy(), seq_len=10, seed=3)
    x, y = s.sequences(0, 10)
    assert sorted(x[:, 0].tolist()) == list(range(0, 100, 10))  # every window once in epoch 0
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(s.sequences(4, 3)[0], x[4:7])  # addressable by position


def test_training_on_explicit_jsonl_files(make_cfg, make_docs, tmp_path):
    import json

    for split, n, seed in (("train", 12, 5), ("valid", 2, 6)):
        with lzma.open(tmp_path / f"{split}.jsonl.xz", "wt") as f:
            for doc in make_docs(n, 600, seed):
                f.write(json.dumps({"text": doc}) + "\n")
    cfg = make_cfg(steps=2, data="/nonexistent", train_files=[str(tmp_path / "train.jsonl.xz")],
                   valid_files=[str(tmp_path / "valid.jsonl.xz")], cache_dir=str(tmp_path / "cache"))
    assert math.isfinite(train(cfg)["val_ppl"])


def test_jsonl_and_compressed_corpora(tmp_path):
    import json

    from discrete.validation.corpus import find_split, read_documents

    with lzma.open(tmp_path / "train.jsonl.xz", "wt") as f:
        for t in ("first doc", "second doc"):
            f.write(json.dumps({"text": t}) + "\n")
    assert read_documents(find_split(tmp_path, "train")) == ["first doc", "second doc"]
    (tmp_path / "valid.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(UserError, match=r"valid.jsonl:1"):
        read_documents(find_split(tmp_path, "valid"))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "huge"], "unknown model 'huge'; expected one of"),
        (["--optimizer", "sgdx"], "unknown optimizer 'sgdx'; expected one of"),
        (["--data", "/nonexistent/corpus"], "does not exist"),
        pytest.param(["--optimizer", "galore", "--rank", "65"], "rank 65 is out of range", marks=needs_discrete),
        (["--optimizer", "adamw", "--eps-placement", "hf"], "adamw (torch.optim.AdamW) adds eps to sqrt(v_hat) only"),
        (["--loss-chunk", "-1"], "--loss-chunk"),
        # with the sync-free default (--nonfinite ignore) divergence is caught at the first log step
        pytest.param(["--optimizer", "osd", "--lr", "1e30", "--steps", "4", "--log-every", "2"],
                     "training diverged: non-finite loss", marks=needs_discrete),
    ],
)
def test_bad_input_is_one_line_exit_2(corpus_dir, cache_dir, tmp_path, capsys, args, message):
    base = ["validate", "--model", "tiny", "--steps", "1", "--data", str(corpus_dir), "--vocab-size", "300",
            "--seq-len", "16", "--batch-size", "2", "--cache-dir", str(cache_dir), "--out", str(tmp_path / "r"),
            "--device", "cpu", "--no-progress"]
    assert cli_main(base + args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_corrupt_corpus_is_a_user_error(tmp_path, capsys):
    (tmp_path / "train.txt.xz").write_bytes(b"\xfd7zXZ\x00 this is not xz")
    (tmp_path / "valid.txt").write_text("ok\n")
    code = cli_main(["validate", "--model", "tiny", "--steps", "1", "--data", str(tmp_path),
                     "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "r"), "--device", "cpu"])
    assert code == 2 and "corrupt" in capsys.readouterr().err


def test_report_json_and_plots(make_cfg, tmp_path, capsys):
    import json

    cfg = make_cfg(steps=3, out=str(tmp_path / "r1"))
    train(cfg)
    capsys.readouterr()  # drop the training log lines
    assert cli_main(["report", cfg.out, "--json", "--plots", str(tmp_path / "plots")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"optimizer", "model", "rank", "tokens", "val_ppl", "tokens_per_s", "peak_mem_gb"} <= rows[0].keys()
    assert rows[0]["tokens"] == 3 * 4 * 16
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "drift_vs_steps.png", "h_proxy_vs_steps.png", "memory.png", "residual_vs_steps.png", "summary_ci.png",
        "tokens_per_s.png", "val_loss_vs_tokens.png"]
    assert cli_main(["report", str(tmp_path / "nope")]) == 2
