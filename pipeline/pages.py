"""The HTML pages' one stylesheet and frame: the statistics, training and evaluation pages and the
run report (which inlines the others' bodies) all look alike and share these rules."""

from __future__ import annotations

import html

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; font-size: 14px; text-align: left; vertical-align: top; }
table.numbers td, table.numbers th { text-align: right; }
table.numbers td:first-child, table.numbers th:first-child { text-align: left; }
tr.bad td, tr.failed td, tr.blocked td { background: #fde8e8; } tr.warn td { background: #fff6dd; }
tr.cached td { color: #555; }
.ok { color: #1a7f37; } .bad { color: #c62828; }
p.error { color: #b00020; white-space: pre-wrap; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; }
section { margin-bottom: 1.5em; } section p { font-size: 13px; color: #555; }
section.page { border-top: 2px solid #ddd; margin-top: 2em; }
div.charts { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
"""


def html_page(title: str, body: str) -> str:
    """A whole page: `title` (plain text, escaped here) and `body` (HTML, escaped by its maker)."""
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>\n"
        f"<style>{STYLE}</style></head>\n<body>{body}</body></html>\n"
    )
