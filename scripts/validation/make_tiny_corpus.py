"""Build the small public-domain corpus shipped with the package for ``validate --model tiny``.

Usage: PYTHONPATH=. python3 scripts/validation/make_tiny_corpus.py [--corpus ../shared/data/corpus]

Takes, from the shared corpus (its MANIFEST.md lists each document's licence), the first
``TRAIN_CHARS_PER_DOC`` characters (cut at a paragraph end) of the first ``TRAIN_DOCS`` train
documents whose licence is "public domain" (Project Gutenberg books whose authors died before 1956),
and likewise ``VALID_CHARS_PER_DOC`` of the first ``VALID_DOCS`` public-domain valid documents.
No CC BY-SA (WikiText) text is taken, so the shipped files carry no licence obligations. Writes
``discrete/validation/tiny_corpus/{train,valid}.txt.xz`` (the shared corpus's format) and its
MANIFEST.md (sources, characters, SHA-256). Deterministic: the same input gives the same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import lzma
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "discrete" / "validation" / "tiny_corpus"
SEP = "\n\n<|doc|>\n"
TRAIN_DOCS, TRAIN_CHARS_PER_DOC = 4, 100_000
VALID_DOCS, VALID_CHARS_PER_DOC = 2, 15_000


def manifest_rows(manifest: str, split: str) -> list[dict]:
    """The document table of one split: [{index, title, source, license}]."""
    part = manifest.split(f"### {split} ")[1].split("\n### ")[0]
    rows = []
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            rows.append({"index": int(cells[0]), "title": cells[1], "source": cells[2].strip("`"),
                         "license": cells[3]})
    return rows


def prefix(doc: str, n: int) -> str:
    """The first ``n`` characters of ``doc``, cut back to the end of a paragraph."""
    if len(doc) <= n:
        return doc
    cut = doc.rfind("\n\n", 0, n)
    return doc[: cut if cut > n // 2 else n].rstrip()


def build(corpus: Path) -> list[str]:
    manifest = (corpus / "MANIFEST.md").read_text()
    lines = ["# Tiny public-domain corpus (shipped with the package)", "",
             "Used by `osd-theory validate --model tiny` when no `--data` is given, so the quick start works on a "
             "fresh clone without network. Built by `scripts/validation/make_tiny_corpus.py` from the project's "
             "shared pretraining corpus: prefixes (cut at a paragraph end) of public-domain Project Gutenberg "
             "books only (US public domain; all authors died before 1956; no Project Gutenberg licence text). "
             "Format: documents joined by `\\n\\n<|doc|>\\n`, UTF-8, one final newline.", ""]
    for split, n_docs, chars in (("train", TRAIN_DOCS, TRAIN_CHARS_PER_DOC), ("valid", VALID_DOCS, VALID_CHARS_PER_DOC)):
        docs = lzma.open(corpus / f"{split}.txt.xz", "rt", encoding="utf-8").read()[:-1].split(SEP)
        chosen = [r for r in manifest_rows(manifest, split) if r["license"] == "public domain"][:n_docs]
        texts = [prefix(docs[r["index"]], chars) for r in chosen]
        data = (SEP.join(texts) + "\n").encode()
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{split}.txt.xz"
        path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        lines += [f"## {split}.txt.xz", "",
                  f"{len(texts)} documents, {sum(map(len, texts)):,} characters, {len(data):,} bytes uncompressed, "
                  f"sha256 of the uncompressed file `{hashlib.sha256(data).hexdigest()}`.", "",
                  "| # | title | source | licence | characters taken |", "|---|---|---|---|---|"]
        lines += [f"| {r['index']} | {re.sub(r'[|]', '/', r['title'])} | `{r['source']}` | {r['license']} | "
                  f"{len(t):,} |" for r, t in zip(chosen, texts)]
        lines.append("")
    (OUT / "MANIFEST.md").write_text("\n".join(lines))
    return [str(p) for p in sorted(OUT.iterdir())]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "corpus"))
    for path in build(Path(ap.parse_args().corpus)):
        print(f"wrote {path} ({Path(path).stat().st_size:,} bytes)")
