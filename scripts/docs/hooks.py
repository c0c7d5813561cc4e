"""MkDocs hooks for the osd-theory site (registered in mkdocs.yml under ``hooks:``).

* Docstrings in this project write ``Example:`` (singular) above doctest lines; griffe's
  Google parser only knows ``Examples:`` and would render the ``>>>`` lines as Markdown
  (where ``state[W]["proj"]`` reads as a broken reference link). We register the singular
  title as an examples section too.
"""
from __future__ import annotations

import logging

log = logging.getLogger("mkdocs.hooks.osd_theory")


def _singular_example_sections() -> None:
    try:  # a private table of griffe's Google parser; if it moves, the strict build says so
        from griffe._internal.docstrings import google
        google._section_kind.setdefault("example", google.DocstringSectionKind.examples)
    except (ImportError, AttributeError) as exc:
        log.info("could not register 'Example:' docstring sections: %s", exc)


_singular_example_sections()
