"""Token arrays (cached memmaps) and deterministic, resumable batching.

Train stream. The train tokens are cut into ``n = (N-1) // T`` non-overlapping windows of
``T+1`` tokens (stride T). Epoch ``e`` visits them in the order ``randperm(n)`` drawn from a
generator seeded with ``seed + e``. Global sequence number ``j`` is therefore window
``perm_{j // n}[j % n]``: the data position is one integer, and a resumed or data-parallel run
reads exactly the sequences an uninterrupted single-process run reads.

Validation. The valid tokens are cut the same way (no shuffling); the first ``val_tokens``
predicted tokens are used, or all of them (the whole split, bar a tail shorter than T+1).

Cache entries carry the SHA-256 of their tokens; a damaged entry is encoded again, with a note.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from discrete.validation.corpus import SplitFiles, read_documents
from discrete.validation.tokenizer import DOC_TOKEN, chunks
from osd_theory.errors import UserError

TOKENS_VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_documents(tok, docs: list[str]) -> np.ndarray:
    """Token ids of the documents, each followed by ``<|doc|>`` (so the model sees boundaries)."""
    doc_id = tok.token_to_id(DOC_TOKEN)
    dtype = token_dtype(tok.get_vocab_size())
    pieces, owner = [], []
    for i, d in enumerate(docs):
        cs = chunks(d)
        pieces.extend(cs)
        owner.extend([i] * len(cs))
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets needed
    out: list[np.ndarray] = []
    for j, enc in enumerate(encode(pieces)):
        out.append(np.asarray(enc.ids, dtype=dtype))
        if j + 1 == len(pieces) or owner[j + 1] != owner[j]:
            out.append(np.asarray([doc_id], dtype=dtype))
    return np.concatenate(out)


def load_or_encode(files: SplitFiles, tok, tok_key: str, max_chars: int | None, cache_dir: Path, log=print) -> np.ndarray:
    """The split's token array as a read-only memmap, encoding (and caching) it on a miss or a corrupt entry."""
    spec = {"v": TOKENS_VERSION, "tok": tok_key, "files": files.fingerprint(), "chars": max_chars}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"tokens-{files.split}-{key}.bin"
    meta_path = path.with_suffix(".json")
    if path.is_file() or meta_path.is_file():
        meta, problem = _check_cached(path, meta_path, tok.get_vocab_size())
        if meta is not None:
            return np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["length"],))
        log(f"cached {files.split} tokens {path} are corrupt ({problem}); encoding them again")
    log(f"tokenizing {files.split} split -> {path}")
    ids = encode_documents(tok, read_documents(files, max_chars))
    meta = {"dtype": ids.dtype.name, "length": int(ids.size), "sha256": hashlib.sha256(ids.tobytes()).hexdigest(), **spec}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic(path, ids.tofile)
        _atomic(meta_path, lambda tmp: tmp.write_text(json.dumps(meta)))  # lands last: its presence means the .bin is whole
    except OSError as exc:
        raise UserError(f"--cache-dir {cache_dir}: cannot write {path.name} ({exc.strerror or exc})") from None
    return np.memmap(path, dtype=ids.dtype, mode="r", shape=(meta["length"],))


def _atomic(path: Path, write) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_cached(path: Path, meta_path: Path, vocab_size: int) -> tuple[dict | None, str]:
    """(meta, "") for a sound cache entry, else (None, what is wrong): missing half, bad meta, size or checksum."""
    if not (path.is_file() and meta_path.is_file()):
        return None, "half of the entry is missing"
    try:
        meta = json.loads(meta_path.read_text())
        dtype, length = np.dtype(meta["dtype"]), int(meta["length"])
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable {meta_path.name}: {type(exc).__name__}"
    if path.stat().st_size != length * dtype.itemsize:
        return None, f"{path.stat().st_size} bytes, expected {length * dtype.itemsize}"
    if "sha256" in meta:  # entries written before the checksum existed are checked by size only
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        if h.hexdigest() != meta["sha256"]:
            return None, "checksum mismatch"
    elif length and int(np.memmap(path, dtype=dtype, mode="r", shape=(length,)).max()) >= vocab_size:
        return None, "token ids beyond the vocabulary"
    return meta, ""


@dataclass
class TrainStream:
    """Shuffled-epoch windows of ``seq_len + 1`` tokens, addressed by global sequence number."""

    tokens: np.ndarray  # (N,) token ids
    seq_len: int
    seed: int

    def __post_init__(self):
        self.n_windows = (len(self.tokens) - 1) // self.seq_len
        if self.n_windows < 1:
            raise UserError(f"train split has {len(self.tokens)} tokens, fewer than one sequence of {self.seq_len + 1}")
        self._epoch, self._perm = -1, None

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n_windows, generator=g)
        return self._perm

    def sequences(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (count, T) int64 for global sequences ``start .. start+count-1``."""
        rows = []
        for j in range(start, start + count):
            w = int(self._order(j // self.n_windows)[j % self.n_windows])
            rows.append(np.asarray(self.tokens[w * self.seq_len : w * self.seq_len + self.seq_len + 1], dtype=np.int64))
        xy = torch.from_numpy(np.stack(rows))  # (count, T+1)
        return xy[:, :-1].contiguous(), xy[:, 1:].contiguous()

    def epochs(self, n_sequences: int) -> float:
        return n_sequences / self.n_windows


def valid_windows(tokens: np.ndarray, seq_len: int, val_tokens: int | None) -> torch.Tensor:
    """(n, T+1) int64 windows of the valid split, stride T, the first ``ceil(val_tokens/T)`` or all."""
    n = (len(tokens) - 1) // seq_len
    if val_tokens is not None:
        n = min(n, -(-val_tokens // seq_len))
    if n < 1:
        raise UserError(f"valid split has {len(tokens)} tokens, fewer than one sequence of {seq_len + 1}")
    idx = torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]  # (n, T+1)
    return torch.from_numpy(np.asarray(tokens[: n * seq_len + 1], dtype=np.int64))[idx]
