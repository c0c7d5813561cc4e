"""Reading a text corpus: the project's ``train.txt.xz`` / ``valid.txt.xz``, or any text/jsonl files.

A corpus is a list of documents (``str``) per split. Formats, chosen by file suffix:

- ``.txt`` (optionally ``.xz`` / ``.gz`` / ``.bz2``): documents joined by ``"\\n\\n<|doc|>\\n"``
  (MANIFEST.md of the shared corpus); a file without the separator is one document.
- ``.jsonl`` (optionally compressed): one JSON object per line, the document in its ``"text"`` field.

Every failure a user can cause (missing directory, missing split, corrupt archive, bad UTF-8,
bad JSON) is raised as :class:`~osd_theory.errors.UserError` naming the file.
"""
from __future__ import annotations

import bz2
import codecs
import functools
import gzip
import hashlib
import json
import lzma
from dataclasses import dataclass
from pathlib import Path

from osd_theory.errors import UserError

DOC_SEPARATOR = "\n\n<|doc|>\n"
SPLIT_NAMES = {"train": ("train",), "valid": ("valid", "validation", "val")}
_OPENERS = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
_FORMATS = (".txt", ".jsonl")


@dataclass(frozen=True)
class SplitFiles:
    """The files of one split, in the order their documents are read."""

    split: str
    paths: tuple[Path, ...]

    def fingerprint(self) -> str:
        """sha256 over the files' bytes as stored (so a changed file changes every cache key)."""
        h = hashlib.sha256()
        for p in self.paths:
            st = p.stat()
            h.update(p.name.encode() + b"\0" + _file_sha256(str(p.resolve()), st.st_size, st.st_mtime_ns).encode())
        return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the cache key so an edited file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _format_of(path: Path) -> tuple[str, object]:
    suffixes = path.suffixes[-2:]
    opener = _OPENERS.get(suffixes[-1]) if suffixes else None
    fmt = suffixes[-2] if opener and len(suffixes) == 2 else (suffixes[-1] if suffixes else "")
    if fmt not in _FORMATS:
        raise UserError(f"{path}: unknown corpus format; expected .txt or .jsonl, optionally .xz/.gz/.bz2")
    return fmt, opener or open


def find_split(data_dir: str | Path, split: str) -> SplitFiles:
    """The file(s) of ``split`` ("train" or "valid") in ``data_dir``: ``<name>.<fmt>[.<compression>]``."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"corpus directory {str(root)!r} does not exist (pass --data DIR)")
    found = []
    for name in SPLIT_NAMES[split]:
        for fmt in _FORMATS:
            for comp in ("", *_OPENERS):
                p = root / f"{name}{fmt}{comp}"
                if p.is_file():
                    found.append(p)
    if not found:
        raise UserError(
            f"corpus directory {str(root)!r} has no {split} split; expected e.g. {split}.txt.xz or {split}.jsonl"
        )
    return SplitFiles(split, (found[0],))  # first match wins: plain name, .txt before .jsonl


def files_split(split: str, paths: list[str | Path]) -> SplitFiles:
    """A split given as explicit files (``--train-files`` / ``--valid-files``)."""
    ps = tuple(Path(p) for p in paths)
    for p in ps:
        if not p.is_file():
            raise UserError(f"{split} file {str(p)!r} does not exist")
        _format_of(p)
    return SplitFiles(split, ps)


def _read_text(path: Path, max_chars: int | None = None) -> tuple[str, bool]:
    """The decoded file, or (with ``max_chars``) only a prefix of at least that many characters.

    Returns (text, complete). Reading a prefix keeps a CPU smoke run from decompressing 113 MB.
    """
    _, opener = _format_of(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts, n, complete = [], 0, True
    try:
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                parts.append(decoder.decode(block))
                n += len(parts[-1])
                if max_chars is not None and n > max_chars + (1 << 20):
                    complete = False
                    break
            parts.append(decoder.decode(b"", final=complete))
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read ({type(exc).__name__}: {exc}); is the file corrupt or truncated?") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return "".join(parts), complete


def read_documents(files: SplitFiles, max_chars: int | None = None) -> list[str]:
    """Documents of a split, optionally cut to the first ``max_chars`` characters in file order."""
    docs: list[str] = []
    for path in files.paths:
        left = None if max_chars is None else max_chars - sum(map(len, docs))
        if left is not None and left <= 0:
            break
        text, complete = _read_text(path, left)
        fmt, _ = _format_of(path)
        if not complete and fmt == ".jsonl":
            text = text[: text.rfind("\n") + 1]  # drop the line cut by the prefix read
        docs.extend(_parse(text, fmt, path))
    docs = [d for d in docs if d]
    if not docs:
        raise UserError(f"{files.split} split {[str(p) for p in files.paths]} holds no text")
    return docs if max_chars is None else take_prefix(docs, max_chars)


def _parse(text: str, fmt: str, path: Path) -> list[str]:
    if fmt == ".txt":
        return text.removesuffix("\n").split(DOC_SEPARATOR)
    docs = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            docs.append(obj["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{path}:{i}: expected a JSON object with a string field \"text\"") from None
        if not isinstance(docs[-1], str):
            raise UserError(f"{path}:{i}: field \"text\" is not a string")
    return docs


def take_prefix(docs: list[str], max_chars: int) -> list[str]:
    """The first ``max_chars`` characters of the documents in order (the last one cut)."""
    out, left = [], max_chars
    for d in docs:
        if left <= 0:
            break
        out.append(d[:left])
        left -= len(out[-1])
    return out
