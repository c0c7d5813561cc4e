"""Byte-level BPE trained with HF ``tokenizers`` on the train split, cached by a hash of its inputs.

The one special token ``<|doc|>`` (id 0) marks document boundaries in the token arrays. The cache
key covers the train files' bytes, the vocabulary size, the character budget and
``TOKENIZER_VERSION`` (bump it when this recipe changes), so a changed input never reuses a stale file.
A cache file that does not load (damage, a foreign file) is trained again, with a note.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from discrete.validation.corpus import SplitFiles, read_documents
from osd_theory.errors import UserError

TOKENIZER_VERSION = 1
DOC_TOKEN = "<|doc|>"
MIN_VOCAB = 256 + 1  # the byte alphabet plus <|doc|>
CHUNK_CHARS = 1 << 16  # documents are fed to BPE and the encoder in paragraph-aligned pieces


def tokenizer_key(train: SplitFiles, vocab_size: int, max_train_chars: int | None) -> str:
    spec = {"v": TOKENIZER_VERSION, "train": train.fingerprint(), "vocab": vocab_size, "chars": max_train_chars}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def chunks(doc: str, size: int = CHUNK_CHARS) -> list[str]:
    """Split a document at blank lines into pieces of about ``size`` characters.

    Each piece keeps its trailing ``"\\n\\n"``, so the pieces concatenate to the document. Encoding
    pieces instead of whole books lets ``encode_batch`` use every core; the token sequence can
    differ from whole-document encoding only at piece boundaries.
    """
    out, start = [], 0
    while len(doc) - start > size:
        cut = doc.find("\n\n", start + size)
        if cut < 0:
            break
        out.append(doc[start : cut + 2])
        start = cut + 2
    out.append(doc[start:])
    return out


def train_tokenizer(docs: list[str], vocab_size: int):
    """A byte-level BPE ``tokenizers.Tokenizer`` with ``vocab_size`` entries trained on ``docs``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < MIN_VOCAB:
        raise UserError(f"vocab size {vocab_size} is below the byte alphabet ({MIN_VOCAB})")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[DOC_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((c for d in docs for c in chunks(d)), trainer)
    return tok


def load_or_train_tokenizer(train: SplitFiles, vocab_size: int, max_train_chars: int | None, cache_dir: Path, log=print):
    """The cached tokenizer for these inputs, training (and caching) it on a miss. Returns (tokenizer, key)."""
    key = tokenizer_key(train, vocab_size, max_train_chars)
    path = Path(cache_dir) / f"tokenizer-{key}.json"
    if path.is_file():
        tok, problem = _load_cached(path)
        if tok is not None:
            return tok, key
        # a cache entry is derived data: rebuild it rather than stop the run
        log(f"cached tokenizer {path} is corrupt ({problem}); training it again")
    log(f"training BPE tokenizer (vocab {vocab_size}, chars {max_train_chars or 'all'}) -> {path}")
    tok = train_tokenizer(read_documents(train, max_train_chars), vocab_size)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(tmp))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    except Exception as exc:  # OSError, or the Rust tokenizer's plain Exception ("Read-only file system (os error 30)")
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        why = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"--cache-dir {cache_dir}: cannot write {path.name} ({why})") from None
    return tok, key


def _load_cached(path: Path):
    """(tokenizer, None) for a sound cache file, else (None, what is wrong with it)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception with a parser message
        return None, str(exc).splitlines()[0][:120] or type(exc).__name__
    if tok.token_to_id(DOC_TOKEN) != 0:
        return None, f"no {DOC_TOKEN} token at id 0"
    return tok, None
