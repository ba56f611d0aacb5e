"""Self-contained HTML pages: plotly.js inlined once, a sortable table, no request to any network."""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2433;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.15em;margin-top:28px} .meta{color:#5b6478;font-size:.9em}
table.sortable{border-collapse:collapse;font-size:.88em;margin-top:8px}
table.sortable th,table.sortable td{border:1px solid #d8dce6;padding:4px 8px;text-align:right}
table.sortable th{background:#f1f3f8;cursor:pointer;user-select:none} table.sortable td:first-child{text-align:left}
tr.pareto td:first-child{font-weight:600} .grid{display:flex;flex-wrap:wrap;gap:8px}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var rows=Array.from(t.tBodies[0].rows), asc=th.dataset.dir!=='asc'; th.dataset.dir=asc?'asc':'desc';
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.v||a.cells[col].textContent, y=b.cells[col].dataset.v||b.cells[col].textContent;
        var nx=parseFloat(x), ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y); return asc?c:-c;});
      rows.forEach(function(r){t.tBodies[0].appendChild(r);});
    });
  });
});
"""


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_div(fig: Any) -> str:
    """A plotly figure as a <div>, without its own copy of plotly.js and without any CDN reference."""
    return fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                       config={"displaylogo": False, "responsive": True})


def sortable_table(headers: list[str], rows: list[list[Any]], row_classes: list[str] | None = None) -> str:
    """A table a reader sorts by clicking a header. Cells may be (display, sort value) pairs."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for cell in row:
            shown, key = cell if isinstance(cell, tuple) else (cell, None)
            attr = f' data-v="{html.escape(str(key))}"' if key is not None else ""
            cells.append(f"<td{attr}>{html.escape('–' if shown is None else str(shown))}</td>")
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def page(title: str, meta: str, sections: list[tuple[str, str]]) -> str:
    """One HTML document: title, a line of provenance, then (heading, html) sections."""
    parts = [f"<h2>{html.escape(h)}</h2>{body}" if h else body for h, body in sections]
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script>{_plotly_js()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><div class=\"meta\">{meta}</div>{''.join(parts)}"
        f"<script>{_SORT_JS}</script></body></html>"
    )
