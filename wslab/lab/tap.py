"""Notebook views of a :class:`~wslab.wiretap.WireTap`: a live HTML table of its records.

The tap relays and decodes on its own thread; a view is drawn on the thread and
loop of the notebook cell that made it (the tap calls back there through
:meth:`~wslab.wiretap.WireTap.watch`), so a widget is never touched from another
thread. Every string shown is escaped.
"""

from __future__ import annotations

import asyncio
import html
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..wiretap import WireRecord, WireTap

if TYPE_CHECKING:
    import ipywidgets  # type: ignore[import-untyped]

__all__ = ["refresh", "table_html", "view"]


@dataclass
class _Views:
    """The widget views of one tap made on one loop."""

    loop: asyncio.AbstractEventLoop | None
    widgets: list[Any] = field(default_factory=list)


_VIEWS: weakref.WeakKeyDictionary[WireTap, list[_Views]] = weakref.WeakKeyDictionary()


def view(tap: WireTap, rows: int = 50) -> ipywidgets.HTML:
    """A widget table of the last ``rows`` records of ``tap``, kept up to date live.

    Call it from the kernel's thread (a notebook cell): the widget is then only
    ever updated on that thread's loop.
    """
    import ipywidgets

    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    widget = ipywidgets.HTML(table_html(tap.records[-rows:]))
    widget.add_class("wslab-wiretap")
    widget.wslab_rows = rows
    views_of = _VIEWS.setdefault(tap, [])
    views = next((v for v in views_of if v.loop is loop), None)
    if views is None:
        views = _Views(loop)
        views_of.append(views)
        tap.watch(lambda: _redraw(tap, views))
    views.widgets.append(widget)
    return widget


def refresh(tap: WireTap) -> None:
    """Redraw every view of ``tap`` now. Call it from the thread that made them."""
    for views in _VIEWS.get(tap, []):
        _redraw(tap, views)


def _redraw(tap: WireTap, views: _Views) -> None:
    records = tap.records
    for widget in views.widgets:
        widget.value = table_html(records[-widget.wslab_rows :])


_TD = 'style="padding:1px 8px;text-align:left;vertical-align:top;white-space:nowrap"'
_TH = 'style="padding:1px 8px;text-align:left;border-bottom:1px solid #d9dee6"'


def table_html(records: list[WireRecord]) -> str:
    """The records as an HTML table (every string escaped)."""
    head = "".join(
        f"<th {_TH}>{h}</th>"
        for h in ("time", "#", "dir", "opcode", "FIN", "masked", "length", "header", "payload")
    )
    rows = []
    for r in records:
        cells: tuple[str, ...]
        if r.kind == "frame":
            cells = (
                f"{r.time:.3f}",
                str(r.connection),
                r.arrow,
                r.opcode_name,
                "1" if r.fin else "0",
                "1" if r.masked else "0",
                f"{r.length} (kept {len(r.payload)})" if r.truncated else str(r.length),
                r.header.hex(" "),
                r.preview,
            )
            rows.append(
                "<tr>" + "".join(f"<td {_TD}>{html.escape(c)}</td>" for c in cells) + "</tr>"
            )
        else:
            cells = (f"{r.time:.3f}", str(r.connection), r.arrow, r.kind)
            text = r.text if r.kind == "handshake" else r.preview
            if r.kind == "handshake" and r.truncated:
                text = f"{text.rstrip()}\n… ({r.length} bytes in all)"
            rows.append(
                "<tr>"
                + "".join(f"<td {_TD}>{html.escape(c)}</td>" for c in cells)
                + f'<td colspan="5" {_TD}><pre style="margin:0;font-size:smaller">'
                f"{html.escape(text.rstrip())}</pre></td></tr>"
            )
    if not rows:
        rows.append(f'<tr><td colspan="9" {_TD}><i>nothing captured yet</i></td></tr>')
    return (
        '<table class="wslab-wiretap-table" style="font-family:monospace;font-size:12px;'
        f'border-collapse:collapse"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
