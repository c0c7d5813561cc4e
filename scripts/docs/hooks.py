"""MkDocs hooks for the osd-theory site (registered in mkdocs.yml under ``hooks:``).

Pages that are generated, not written by hand, carry a marker comment that this hook
replaces at build time:

* ``<!-- osd:claims -->`` — the claims table, rendered from ``docs/generated/claims.json``,
  which is the verbatim output of ``osd-theory verify --json`` written by
  ``scripts/docs/claims.py`` (a test checks it is current);
* ``<!-- osd:results DIR -->`` — an index of what the other tracks recorded under
  ``docs/results/DIR/``: Markdown reports (linked), figures (embedded), validation run
  directories (a summary table read from their ``log.jsonl``), other files (linked).

Also: docstrings in this project write ``Example:`` (singular) above doctest lines; griffe's
Google parser only knows ``Examples:`` and would render the ``>>>`` lines as Markdown (where
``state[W]["proj"]`` reads as a broken reference link), so the singular title is registered too.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.osd_theory")

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLAIMS_JSON = DOCS / "generated" / "claims.json"
MARKER = re.compile(r"<!--\s*osd:(claims|results)\s*([\w/.-]*)\s*-->")
IMAGES = (".png", ".svg", ".jpg", ".jpeg", ".gif")


def _singular_example_sections() -> None:
    try:  # a private table of griffe's Google parser; if it moves, the strict build says so
        from griffe._internal.docstrings import google
        google._section_kind.setdefault("example", google.DocstringSectionKind.examples)
    except (ImportError, AttributeError) as exc:
        log.info("could not register 'Example:' docstring sections: %s", exc)


_singular_example_sections()


# -- claims --------------------------------------------------------------------------------
def _cell(text) -> str:
    """One Markdown table cell: no newlines, no bare pipes."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _evidence_text(evidence) -> str:
    if isinstance(evidence, str):
        return evidence
    if isinstance(evidence, list):
        return "; ".join(_evidence_text(e) for e in evidence)
    if isinstance(evidence, dict):
        return "; ".join(f"{k}: {_evidence_text(v)}" for k, v in evidence.items())
    return json.dumps(evidence)


def render_claims(data: dict | list) -> str:
    """The claims page body from ``verify --json`` output (a list of claims, or {"claims": [...], ...})."""
    claims = data["claims"] if isinstance(data, dict) else data
    meta = data.get("meta", {}) if isinstance(data, dict) else {}
    lines = ["| claim | statement | verdict | evidence |", "|---|---|---|---|"]
    for c in claims:
        lines.append(f"| **{_cell(c.get('claim', '?'))}** | {_cell(c.get('statement', ''))} | "
                     f"`{_cell(c.get('verdict', '?'))}` | {_cell(_evidence_text(c.get('evidence', '')))} |")
    out = "\n".join(lines)
    if meta:
        out += "\n\n" + "\n".join(f"* **{_cell(k)}**: {_cell(v)}" for k, v in meta.items())
    return out


def claims_markdown() -> str:
    if not CLAIMS_JSON.is_file():
        return ("!!! warning \"Not generated yet\"\n"
                f"    `{CLAIMS_JSON.relative_to(DOCS.parent)}` does not exist: run `python scripts/docs/claims.py`.")
    return render_claims(json.loads(CLAIMS_JSON.read_text()))


# -- results -------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # blank or truncated line
    return rows


def _fmt(x, spec=".4g") -> str:
    return "–" if x is None else format(x, spec) if isinstance(x, (int, float)) else _cell(x)


def run_summary(run_dir: Path) -> dict:
    """The last logged numbers of a validation run directory (config.json + log.jsonl)."""
    cfg_path = run_dir / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    rows = _read_jsonl(run_dir / "log.jsonl")
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    last = train[-1] if train else {}
    return {
        "optimizer": cfg.get("optimizer"), "model": cfg.get("model"),
        "rank": None if cfg.get("optimizer") == "adamw" else cfg.get("rank"),
        "steps": last.get("step"), "train_loss": last.get("loss"),
        "val_loss": evals[-1].get("val_loss") if evals else None,
        "val_ppl": evals[-1].get("val_ppl") if evals else None,
        "H": last.get("H"), "residual": last.get("residual"),
    }


def _rel(path: Path, page_dir: Path) -> str:
    import os
    return os.path.relpath(path, page_dir).replace(os.sep, "/")


def results_markdown(sub: str, page_dir: Path) -> str:
    root = DOCS / "results" / sub
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.is_dir() else []
    if not files:
        return (f"!!! note \"Nothing recorded yet\"\n    `docs/results/{sub}/` is empty in this checkout.")
    out = []
    run_dirs = sorted({p.parent for p in files if p.name == "log.jsonl"})
    if run_dirs:
        out += ["### Runs", "",
                "| run | optimizer | model | rank | steps | train loss | val loss | val ppl | H-proxy | residual |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for d in run_dirs:
            s = run_summary(d)
            out.append(f"| [`{_cell(d.relative_to(root))}`]({_rel(d / 'log.jsonl', page_dir)}) | {_fmt(s['optimizer'])} | "
                       f"{_fmt(s['model'])} | {_fmt(s['rank'])} | {_fmt(s['steps'])} | {_fmt(s['train_loss'])} | "
                       f"{_fmt(s['val_loss'])} | {_fmt(s['val_ppl'], '.1f')} | {_fmt(s['H'])} | {_fmt(s['residual'], '.3f')} |")
        out.append("")
    in_runs = {p for p in files if p.parent in run_dirs}
    reports = [p for p in files if p.suffix == ".md" and p not in in_runs]
    if reports:
        out += ["### Reports", ""] + [f"* [{_cell(p.relative_to(root))}]({_rel(p, page_dir)})" for p in reports] + [""]
    images = [p for p in files if p.suffix.lower() in IMAGES]
    if images:
        out += ["### Figures", ""]
        for p in images:
            out += [f"**{_cell(p.relative_to(root))}**", "", f"![{_cell(p.stem)}]({_rel(p, page_dir)})", ""]
    rest = [p for p in files if p not in in_runs and p not in reports and p not in images]
    if rest:
        out += ["### Data files", ""] + [f"* [{_cell(p.relative_to(root))}]({_rel(p, page_dir)})" for p in rest] + [""]
    return "\n".join(out)


# -- the hook ------------------------------------------------------------------------------
def on_page_markdown(markdown: str, page, config, files) -> str:
    page_dir = (DOCS / page.file.src_uri).parent

    def replace(match: re.Match) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "claims":
            return claims_markdown()
        return results_markdown(arg, page_dir)

    return MARKER.sub(replace, markdown)
