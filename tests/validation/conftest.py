"""Fixtures for the validation track: a small synthetic corpus and a tiny run config."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from discrete.validation.config import RunConfig

WORDS = ("the of and to in a is was he for it with as his on be at by i this had not are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so said what "
         "up its about into than them can only other new some could time these two may then do first any my now such "
         "like our over man me even most made after also did many before must through back years where much your way "
         "well down should because each just those people mr how too little state good very make world still own see "
         "men work long get here between both life being under never day same another know while last might us great "
         "old year off come since against go came right used take three").split()


def synthetic_docs(n_docs: int, words_per_doc: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        paras = []
        left = words_per_doc
        while left > 0:
            n = min(left, rng.randint(20, 80))
            sent = " ".join(rng.choice(WORDS[: rng.randint(20, len(WORDS))]) for _ in range(n))
            paras.append(sent.capitalize() + ".")
            left -= n
        docs.append("\n\n".join(paras))
    return docs


@pytest.fixture(scope="session")
def make_docs():
    """synthetic_docs(n_docs, words_per_doc, seed) as a fixture (no import of a conftest by name)."""
    return synthetic_docs


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """train.txt (~150 KB) and valid.txt (~15 KB) in the shared corpus format."""
    root = tmp_path_factory.mktemp("corpus")
    for split, n, seed in (("train", 30, 0), ("valid", 3, 1)):
        text = "\n\n<|doc|>\n".join(synthetic_docs(n, 900, seed)) + "\n"
        (root / f"{split}.txt").write_text(text)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(corpus_dir, cache_dir, tmp_path):
    """RunConfig factory for a tiny CPU run (vocab 320, T=16, 4 sequences a step)."""

    def make(**kw) -> RunConfig:
        base = dict(model="tiny", optimizer="adamw", steps=6, batch_size=4, seq_len=16, vocab_size=320,
                    max_train_chars=None, val_tokens=256, data=str(corpus_dir), cache_dir=str(cache_dir),
                    out=str(tmp_path / "run"), log_every=1, device="cpu", progress=False, rank=4,
                    update_proj_gap=3)
        base.update(kw)
        return RunConfig(**base)

    return make


def validate_args(cfg: RunConfig, *extra: str) -> list[str]:
    """The `osd-theory validate` command line of a make_cfg() config (plus ``extra`` flags)."""
    return ["validate", "--model", cfg.model, "--optimizer", cfg.optimizer, "--steps", str(cfg.steps),
            "--batch-size", str(cfg.batch_size), "--seq-len", str(cfg.seq_len), "--vocab-size", str(cfg.vocab_size),
            "--val-tokens", str(cfg.val_tokens), "--max-train-chars", "0", "--data", cfg.data,
            "--cache-dir", cfg.cache_dir, "--out", cfg.out, "--log-every", str(cfg.log_every), "--device", "cpu",
            "--rank", str(cfg.rank), "--update-proj-gap", str(cfg.update_proj_gap), "--no-progress", *extra]


@pytest.fixture
def cli_args():
    """validate_args(cfg, *extra) as a fixture."""
    return validate_args


@pytest.fixture
def one_line_error(capsys):
    """Check stderr holds one error line, no traceback, containing every needle; returns it."""

    def check(*needles: str) -> str:
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        for needle in needles:
            assert needle in err, err
        return err

    return check


@pytest.fixture
def assert_same_run():
    return same_run


def same_run(full_out: str, part_out: str) -> None:
    """An interrupted-and-resumed run equals the uninterrupted one: final weights bit for bit, the same log."""
    import torch

    from discrete.validation.checkpoint import CHECKPOINT_NAME
    from discrete.validation.runlog import read_log

    a = torch.load(Path(full_out) / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(Path(part_out) / CHECKPOINT_NAME, weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    la = [(r["step"], r.get("loss"), r.get("val_loss")) for r in read_log(full_out)]
    lb = [(r["step"], r.get("loss"), r.get("val_loss")) for r in read_log(part_out)]
    assert la == lb
