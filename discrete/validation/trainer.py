"""The pretraining loop (nanoGPT-shaped): data -> model -> optimizer -> train steps -> eval -> checkpoints.

Step ``s`` (1-based, the number of finished optimizer steps) consumes global sequences
``(s-1)·B .. s·B-1``; rank r of W takes its slice of B/W, split into micro-batches for gradient
accumulation. The data position is thus a function of the step, and ``--resume`` continues exactly.

A run first does everything that only reads (settings, directory and resume rules, checkpoint,
data, model), so a mistake costs nothing; then it claims (locks) the run directory and trains.
SIGTERM/SIGINT end it after the current step with a checkpoint (:mod:`signals`).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from discrete.validation import distributed as D
from discrete.validation import metrics as M
from discrete.validation import rundir, tensorboard
from discrete.validation.checkpoint import CHECKPOINT_NAME, load_checkpoint, restore, save_checkpoint
from discrete.validation.checkpoint_dcp import save_shards
from discrete.validation.config import RunConfig, all_or_none, check_fields
from discrete.validation.corpus import files_split, find_split
from discrete.validation.coverage import start as start_coverage
from discrete.validation.data import TrainStream, load_or_encode, valid_windows
from discrete.validation.guard import check_gradient_alive, step_guard
from discrete.validation.identity import check_run_files, new_run_id
from discrete.validation.model import build_model, flops_per_token
from discrete.validation.optim import build_optimizer
from discrete.validation.refreshes import refreshed
from discrete.validation.sharpness import measure_steps, meter as sharpness_meter
from discrete.validation.resolve import resolve
from discrete.validation.resume import plan_resume
from discrete.validation.runlog import JsonlLog, append_event, read_meta, record_start
from discrete.validation.signals import Interrupted, StopSignals
from discrete.validation.threads import apply_threads
from discrete.validation.tokenizer import load_or_train_tokenizer
from osd_theory.errors import UserError

# -----------------------------------------------------------------------------
# the lr schedule


def lr_factor(step: int, cfg: RunConfig) -> float:
    """Multiplier of the peak lr for the update that finishes step ``step`` (1-based).

    Over the schedule's ``S = schedule_steps`` (default: steps) steps: linear warm-up over the first
    ``w = max(1, warmup_frac·S)`` steps, then ``f + (1-f)·(1+cos(pi·(s-w)/(S-w)))/2`` with
    ``f = min_lr_frac``; steps after S (a resumed run that was given more steps) stay at ``f``.
    """
    total = cfg.schedule_steps or cfg.steps
    warmup = max(1, int(cfg.warmup_frac * total))
    # 1) linear warm-up from lr/warmup to lr
    if step <= warmup:
        return step / warmup
    # 2) cosine from 1 to min_lr_frac over the remaining steps (GaLore: "cosine to 10%"), then flat
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))


# -----------------------------------------------------------------------------
# data


@dataclass
class Data:
    train: TrainStream
    valid: torch.Tensor  # (n, T+1) windows
    vocab_size: int
    key: str  # fingerprint of tokenizer, train tokens and valid files: a resume must see the same corpus


def prepare_data(cfg: RunConfig, info: D.DistInfo, log) -> Data:
    """Tokenizer and token arrays, built by rank 0 (others wait, then read the cache)."""
    train = files_split("train", cfg.train_files) if cfg.train_files else find_split(cfg.data, "train")
    valid = files_split("valid", cfg.valid_files) if cfg.valid_files else find_split(cfg.data, "valid")
    cache, chars = Path(cfg.cache_dir), all_or_none(cfg.max_train_chars)
    for turn in (True, False):  # rank 0 builds first; then the others load what it cached
        if info.is_main == turn:
            tok, key = load_or_train_tokenizer(train, cfg.vocab_size, chars, cache, log)
            train_ids = load_or_encode(train, tok, key, chars, cache, log)
            valid_ids = load_or_encode(valid, tok, key, None, cache, log)
        D.barrier(info)
    data_key = hashlib.sha256(f"{key}:{valid.fingerprint()}".encode()).hexdigest()[:16]
    return Data(TrainStream(train_ids, cfg.seq_len, cfg.seed),
                valid_windows(valid_ids, cfg.seq_len, all_or_none(cfg.val_tokens)), tok.get_vocab_size(), data_key)


# -----------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, batch: int, device, amp, info: D.DistInfo) -> float:
    """Mean next-token cross-entropy (nats) over every predicted token of ``windows``, all ranks."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, count)
    mine = windows[info.rank :: info.world]
    most = -(-len(windows) // info.world)  # every rank runs as many forwards (FSDP2's forward is collective)
    for i in range(0, most, batch):
        xy = mine[i : i + batch].to(device)
        counted = len(xy) > 0
        xy = xy if counted else windows[:1].to(device)  # a rank out of windows runs one uncounted forward
        with amp():
            logits, _ = model(xy[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), xy[:, 1:].flatten(), reduction="sum")
        if counted:
            total += torch.stack([loss.double(), torch.tensor(xy[:, 1:].numel(), dtype=torch.float64, device=device)])
    D.all_reduce_sum(total, info)
    model.train()
    return float(total[0] / total[1])


# -----------------------------------------------------------------------------
# theory metrics on log steps


def log_metrics(model, bundle, loss: float, before, window_start, kept=None) -> tuple[dict, dict]:
    """H-proxy, projection residuals, drift and state bytes; returns (record, projectors now).

    ``kept``: the step's gradients kept by :class:`metrics.KeptGradients` (per-layer mode frees them in backward).
    """
    opt = bundle.optimizer
    rec = {**M.hamiltonian_proxy(loss, opt), "state_bytes": M.state_bytes(model, opt)}
    now = M.projectors(opt)
    if now:
        rec["residual"] = M.projection_residual(bundle.projected, before, kept)
        rec["residual_after"] = M.projection_residual(bundle.projected, now, kept)
        rec["drift_step"] = M.subspace_drift(before, now).get("mean")
        rec["drift_window"] = M.subspace_drift(window_start, now).get("mean") if window_start else None
        rec["orth_error"] = M.orthogonality_error(now)
    return rec, M.snapshot(opt) if now else {}


# -----------------------------------------------------------------------------
# the run: check everything, then claim the run dir and train


def train(cfg: RunConfig) -> dict:
    check_fields(cfg)  # before DDP/CUDA setup, so --device cuda without a GPU is a one-line error
    info, device = D.setup(cfg.device)
    if device.type == "cpu" or cfg.threads:  # threads.py: auto on a CPU run; meta.json records the number
        apply_threads(cfg.threads)
    finished = False
    try:
        result = _train(cfg, info, device)
        finished = True
        return result
    finally:
        D.teardown(info, finished)


def _train(cfg: RunConfig, info: D.DistInfo, device: torch.device) -> dict:
    log = print if info.is_main else (lambda *a, **k: None)
    run_dir = Path(cfg.out)

    # 1) everything that only reads: settings, directory rules, the checkpoint, data, model
    resolve(cfg, info.world)
    rundir.check_writable(run_dir)
    if info.is_main:
        rundir.check_not_live(run_dir)
    plan = ck = None
    run_id = new_run_id()
    if cfg.resume:
        ck = load_checkpoint(run_dir)
        # first (a hand-edited config.json would confuse the settings check) and before the rule file is
        # imported (build_optimizer): the checkpoint, config and rule file are the run's own
        run_id = check_run_files(run_dir, cfg, ck, read_meta(run_dir))
        plan = plan_resume(run_dir, cfg)
        if ck["step"] >= cfg.steps:
            log(f"{run_dir} already finished step {ck['step']} of {cfg.steps}; nothing to do "
                "(pass a larger --steps to extend it)")
            return {"step": ck["step"], "nothing_to_do": True}
    else:
        rundir.check_fresh(run_dir, cfg.overwrite)
    data = prepare_data(cfg, info, log)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, vocab_size=data.vocab_size, max_seq_len=cfg.seq_len,
                        loss_chunk=cfg.loss_chunk).to(device)
    if cfg.fsdp:  # FSDP2: every block, then the root (embeddings, norm, head); parameters become DTensors
        from torch.distributed.fsdp import fully_shard

        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
    with step_guard(cfg, 0, "the rule file was imported"):
        bundle = build_optimizer(model, cfg)
    if ck is not None:
        restore(ck, model, bundle.optimizer, cfg, data.key)
    coverage = start_coverage(model, cfg, ck, keep=info.is_main)  # rank 0 alone logs and checkpoints
    sharp = sharpness_meter(cfg, data.train)  # every rank checks the flag (a refusal stops all); rank 0 measures
    sharp = sharp if info.is_main else None

    # 2) from here on the run dir changes, under its lock (taken by rank 0; the others follow its verdict)
    with contextlib.ExitStack() as claimed:
        refused = None
        try:
            claimed.enter_context(rundir.claim(run_dir, fresh=ck is None, overwrite=cfg.overwrite, enabled=info.is_main))
        except UserError as exc:
            refused = exc
        if not D.agree(refused is None, info, device):
            raise refused or UserError(f"rank 0 could not claim the run directory {run_dir} (see its message)")
        start = ck["step"] if ck is not None else 0
        runlog = JsonlLog(run_dir, info.is_main, resume_step=start if ck is not None else None)
        runlog = claimed.enter_context(tensorboard.tee(runlog, cfg.tensorboard, start if ck is not None else None))
        if info.is_main:
            record_start(run_dir, cfg, plan, start, runlog.dropped, device, info.world, data.key, log, run_id=run_id)
        try:
            return _loop(cfg, info, device, model, bundle, data, runlog, ck, log, coverage, sharp, run_id=run_id)
        except (Interrupted, UserError) as exc:
            if info.is_main:
                event = "interrupted" if isinstance(exc, Interrupted) else "failed"
                with contextlib.suppress(UserError):  # a full disk must not hide the first error
                    append_event(run_dir, event, message=str(exc))
            raise


def _nonfinite_grads(params: list[torch.Tensor]) -> tuple[int, int]:
    """(parameters whose gradient holds a NaN/Inf, parameters with a gradient); one host sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0, 0
    return int((~torch.isfinite(torch.stack(torch._foreach_norm(grads)))).sum()), len(grads)


def _loop(cfg, info, device, model, bundle, data, runlog, ck, log, coverage=None, sharp=None, run_id=None) -> dict:
    run_dir = Path(cfg.out)
    opt = bundle.optimizer
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    fwd = torch.compile(model) if cfg.compile else model
    if info.enabled and not cfg.fsdp:
        fwd = torch.nn.parallel.DistributedDataParallel(fwd, device_ids=[device.index] if device.type == "cuda" else None)
    start = ck["step"] if ck is not None else 0
    log(f"{cfg.model}: {model.num_params() / 1e6:.2f}M params, vocab {data.vocab_size}, {cfg.optimizer} "
        f"lr {cfg.lr} rank {cfg.rank}, {len(data.train.tokens):,} train tokens, {data.valid.numel():,} valid tokens")

    B, T, mb = cfg.batch_size, cfg.seq_len, cfg.micro_batch_size
    per_rank, accum = B // info.world, B // info.world // mb
    base_lrs = [g.get("base_lr", cfg.lr) for g in opt.param_groups]
    params = [p for g in opt.param_groups for p in g["params"]]
    bar = _progress(cfg, info, start)
    # steps: timed steps of this window (tokens/s); loss_steps: steps in its loss sum (may predate a resume)
    # proj_since: the step of window_proj, the start of drift_window (the resume step right after a resume,
    # whose previous log step's projectors are not in the checkpoint)
    window = {"t": time.perf_counter(), "steps": 0, "loss_steps": 0, "loss": torch.zeros((), device=device),
              "skipped": [], "proj_since": start}
    if ck is not None and ck["extra"].get("window_loss") is not None:  # the logged loss is a window mean
        window.update(loss=ck["extra"]["window_loss"].to(device), loss_steps=ck["extra"].get("window_steps", 0))
    window_proj = M.snapshot(opt)
    _reset_peak(device)
    summary: dict = {}
    last = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
    stuck = 0  # consecutive steps in which every update was skipped (--nonfinite skip)
    sharp_steps = measure_steps(cfg.steps, cfg.sharpness) if cfg.sharpness else set()  # all ranks log them

    def checkpoint(step: int):
        extra = {"window_loss": window["loss"].detach().cpu(), "window_steps": window["loss_steps"],
                 "data_key": data.key, "optimizer": cfg.optimizer, "model": cfg.model, "run_id": run_id,
                 **({"coverage": coverage.state_dict()} if coverage else {})}
        if cfg.fsdp:  # every process writes its shards (checkpoint_dcp.py)
            return save_shards(run_dir, model=model, optimizer=opt, step=step, sequences=step * B, extra=extra,
                               info=info, device=device)
        path = None
        if info.is_main:
            path = save_checkpoint(run_dir, model=model, optimizer=opt, step=step, sequences=step * B, extra=extra)
        D.barrier(info)
        return path

    with StopSignals() as signals:
        for step in range(start + 1, last + 1):
            is_log = step % cfg.log_every == 0 or step in (1, cfg.steps) or step in sharp_steps
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * lr_factor(step, cfg)
            # per-layer mode frees the gradients in backward: on a log step keep them (host) for the residuals
            kept = M.KeptGradients() if is_log and bundle.per_layer is not None else None
            watching = bundle.per_layer.watch(kept) if kept is not None else None
            # forward/backward over the micro-batches of this rank; DDP syncs on the last one
            for k in range(accum):
                x, y = data.train.sequences((step - 1) * B + info.rank * per_rank + k * mb, mb)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                sync = contextlib.nullcontext() if (k == accum - 1 or not info.enabled or cfg.fsdp) else fwd.no_sync()
                with sync, amp():
                    _, loss = fwd(x, y)
                with step_guard(cfg, step):  # --per-layer steps in backward
                    (loss / accum).backward()
                window["loss"] += loss.detach() / accum
            if watching is not None:
                watching.remove()
            before = M.snapshot(opt) if is_log else None
            grad_norm = bundle.clip_grad_norm_(model, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            with step_guard(cfg, step):
                opt.step()
                extra = bundle.after_step(step) if bundle.after_step else {}
            if sharp is not None and sharp.due(step):
                extra.update(sharp.measure(model, opt))
                window["t"] += extra.get("sharpness_s", 0.0)  # the probe's time is no training time
            if cfg.log_refresh and (n := refreshed(opt)):
                extra["refreshed"], is_log = n, True   # before is None here: only residual_after is logged
            window["steps"] += 1
            window["loss_steps"] += 1
            if cfg.nonfinite == "skip":  # this policy syncs every step anyway; one more small sync
                bad, n = _nonfinite_grads(params)
                window["skipped"].append(bad)
                stuck = stuck + 1 if n and bad == n else 0
                if stuck >= cfg.max_skipped_steps:
                    raise UserError(
                        f"training stopped updating: every parameter update of steps {step - stuck + 1}..{step} was "
                        f"skipped for non-finite gradients (--nonfinite skip, --max-skipped-steps "
                        f"{cfg.max_skipped_steps}); the model no longer trains. Lower --lr (now {cfg.lr:g})")

            if is_log:
                rec, window_proj = _log_step(model, bundle, cfg, info, device, step, window, before, window_proj,
                                             grad_norm, coverage, kept)
                rec.update(extra)
                runlog.write(rec)
                check_gradient_alive(rec["grad_norm"], rec["loss"], step, cfg, data.vocab_size)
            if stuck and step == cfg.steps:  # a run shorter than --max-skipped-steps must not end "done" either
                raise UserError(f"training diverged: every parameter update of the last {stuck} step(s) "
                                f"({step - stuck + 1}..{step}) was skipped for non-finite gradients (--nonfinite skip); "
                                f"the model no longer trains. Lower --lr (now {cfg.lr:g})")
                summary = rec
                bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}") if bar else log(_line(rec))
            opt.zero_grad(set_to_none=True)

            if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
                val = evaluate(fwd if not info.enabled else model, data.valid, mb, device, amp, info)
                if not math.isfinite(val):
                    raise UserError(f"training diverged: non-finite validation loss ({val}) at step {step}; lower --lr")
                ppl = math.exp(val) if val < 700 else math.inf  # exp overflows a float beyond ~709
                ev = {"kind": "eval", "step": step, "tokens": step * B * T, "val_loss": val, "val_ppl": ppl,
                      **(coverage.update_metrics() if coverage else {})}
                runlog.write(ev)
                log(f"step {step}: val loss {val:.4f}, ppl {ppl:.2f}")
                summary = {**summary, **ev}
                window["t"] = time.perf_counter()  # keep eval time out of tokens/s ...
                _reset_peak(device)  # ... and eval's logits out of the training peak memory
            saved = False
            if cfg.ckpt_every >= 0 and (step == last or (cfg.ckpt_every and step % cfg.ckpt_every == 0)):
                checkpoint(step)
                saved = True
            if bar:
                bar.update(1)
            # single process: stop at the end of any step; DDP: at log steps, where the ranks agree
            if step < last and (signals.received is not None or (info.enabled and is_log)):
                signum = _agreed_signal(signals.received, info, device)
                if signum:
                    path = (run_dir / CHECKPOINT_NAME if saved else checkpoint(step)) if cfg.ckpt_every >= 0 else None
                    if bar:
                        bar.close()
                    raise Interrupted(signum, step, path if info.is_main else None)
    if bar:
        bar.close()
    return summary


def _agreed_signal(received: int | None, info: D.DistInfo, device) -> int:
    """The signal to stop on (0: none); under DDP the largest any rank received, so all stop together."""
    if not info.enabled:
        return received or 0
    flag = torch.tensor(float(received or 0), device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item())


def _log_step(model, bundle, cfg, info, device, step, window, before, window_proj, grad_norm, coverage=None,
              kept=None):
    """One JSONL record: loss, lr, throughput, memory and the theory metrics."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - window["t"]
    loss_t = D.all_reduce_sum(window["loss"].detach().clone().float(), info) / (info.world * window["loss_steps"])
    loss = float(loss_t)
    if not math.isfinite(loss):
        # the optimizers run without a per-step finite check (cfg.nonfinite = "ignore"): stop here
        raise UserError(f"training diverged: non-finite loss ({loss}) in the log window ending at step {step}; "
                        "lower --lr, or pass --nonfinite skip to skip bad gradients")
    tokens_window = window["steps"] * cfg.batch_size * cfg.seq_len
    rec = {
        "kind": "train", "step": step, "tokens": step * cfg.batch_size * cfg.seq_len,
        "loss": loss, "ppl": math.exp(min(loss, 50.0)), "lr": bundle.optimizer.param_groups[0]["lr"],
        "grad_norm": float(grad_norm), "tokens_per_s": tokens_window / elapsed, "step_time_s": elapsed / window["steps"],
    }
    cfg_model = model.cfg
    rec["mfu_tflops"] = rec["tokens_per_s"] * flops_per_token(cfg_model, cfg.seq_len) / 1e12 / info.world
    if device.type == "cuda":
        rec["peak_alloc_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        rec["peak_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 2**30
    if cfg.nonfinite == "skip":
        rec["skipped"] = list(window["skipped"])  # per step of the window: parameters whose update was skipped
    # the theory metrics read full matrices; under FSDP2 they are DTensor shards (not computed: docs/scaling.md)
    theory, window_proj = (log_metrics(model, bundle, loss, before or {}, window_proj, kept) if not cfg.fsdp
                           else ({}, {}))
    rec.update(theory)
    if rec.get("drift_window") is not None:
        rec["drift_window_since"] = window["proj_since"]
    if coverage is not None:
        rec.update(coverage.observe(bundle.optimizer))
    # reset the window after the metric work, so its cost is charged to no window's tokens/s
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    _reset_peak(device)
    window.update(t=time.perf_counter(), steps=0, loss_steps=0, loss=torch.zeros((), device=device), skipped=[],
                  proj_since=step)
    return rec, window_proj


def _reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _progress(cfg: RunConfig, info: D.DistInfo, start: int):
    """A tqdm bar on rank 0 of a terminal; otherwise None (plain log lines instead)."""
    if not (cfg.progress and info.is_main and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.steps, initial=start, desc=f"{cfg.model}/{cfg.optimizer}", dynamic_ncols=True)


def _line(rec: dict) -> str:
    extra = f" H {rec['H']:.4f}" if "H" in rec else ""
    extra += f" res {rec['residual']:.3f}" if rec.get("residual") is not None else ""
    mem = f" mem {rec['peak_alloc_gb']:.2f}G" if "peak_alloc_gb" in rec else ""
    return (f"step {rec['step']}: loss {rec['loss']:.4f} lr {rec['lr']:.2e} |g| {rec['grad_norm']:.3f} "
            f"{rec['tokens_per_s']:.0f} tok/s{mem}{extra}")
