"""ChatWidget: the chat as a notebook widget, bound to a ChatClient; ``chat()`` starts one.

In a cell::

    from wslab.lab.widget import chat
    w = chat()                          # a local server, a client, a widget, shown
    w = chat(server.url, "alice")       # or join a server you started yourself
    await stop_shared_server()          # at the end: close the widgets, stop chat()'s server

Threads. A kernel runs one asyncio loop on its main thread: cells, the events
the browser sends to widgets, and the :class:`~wslab.client.ChatClient`'s task
(it runs on the loop that started it) all take turns on it. So this module
changes widgets on that loop only, and if ``on_change`` ever fires on another
thread it hops over with ``call_soon_threadsafe``. Every user string goes
through :func:`html.escape` before it reaches an ``HTML`` widget, because that
widget sets ``innerHTML`` unsanitized.

Why the sent text is the text you see. The browser syncs the text box to the
kernel update by update, and holds updates back while one is in flight, but
Enter and the Send button travel as separate messages that can overtake them:
an Enter right after fast typing reached the kernel with "from the widge". So
Enter and Send only ask the box to *flush*::

    Enter / Send  --custom message-->  kernel: flush_request += 1  -->  browser
    browser: a jsdlink copies flush_request to flush_reply, and the change
             queues behind every update the box still had to send
    kernel:  flush_reply changed, so value is what the learner saw: send(value)

(The replacement ipywidgets suggests for the deprecated ``on_submit``,
``continuous_update=False`` and observing ``value``, also fires when the box
loses focus: clicking elsewhere would send a half-typed message.)

Identity. A re-run cell makes a new widget for the same server and username:
the widget it replaces (found in :data:`wslab.lab.lesson.registry`) is closed with
1001 (like a page being left) and hands its id and token to the new client
(:meth:`ChatClient.take_identity`), so the others see a reload within the
grace, not a departure and an arrival. The shared server of :func:`chat`
lives in :mod:`wslab.lab.lesson`; this module only shows a client's state.

What it shows follows :mod:`wslab.display`, as the browser page does: joins and
leaves as lines among the messages, a notice when missed messages are gone,
an id suffix on names two present users share, bidi controls neutralized.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from ..errors import MissingExtraError

try:
    import ipywidgets as widgets  # type: ignore[import-untyped]
    from IPython.core.getipython import get_ipython
    from IPython.display import display
    from traitlets import Int
except ImportError as missing:  # pragma: no cover - tested in a venv without the extra
    raise MissingExtraError(
        "the chat widget (wslab.lab.widget)", missing.name or "ipywidgets"
    ) from None

from ..client import ChatClient, PendingMessage, PresenceEvent, RawEvent
from ..display import TRUNCATED_NOTICE, display_names, neutralize, presence_line
from ..protocol import MAX_MESSAGE_LENGTH, CloseCode, MessageEntry
from .lesson import registry, shared_server, stop_shared_server

__all__ = ["ChatWidget", "chat", "shared_server", "stop_shared_server"]

logger = logging.getLogger("wslab.lab.widget")

LOG_LINES = 100  # raw events shown by show_log=True
_LOG_LINE_CHARS = 300

# Lab's theme variables, with fallbacks for other front-ends.
_BADGE_COLOURS = {
    "idle": "var(--jp-layout-color4, #8a94a3)",
    "connecting": "var(--jp-warn-color1, #c47f00)",
    "online": "var(--jp-success-color1, #1f8a4c)",
    "reconnecting": "var(--jp-warn-color1, #c47f00)",
    "offline": "var(--jp-error-color1, #b3261e)",
}
_MUTED = "color: var(--jp-ui-font-color2, #5b6675)"
_BORDER = "1px solid var(--jp-border-color2, #d9dee6)"


class _MessageBox(widgets.Text):  # type: ignore[misc]
    """The text box, plus the two counters of the flush (see the module docstring)."""

    flush_request = Int(0).tag(sync=True)
    flush_reply = Int(0).tag(sync=True)


class ChatWidget:
    """A chat in a notebook, bound to a :class:`~wslab.client.ChatClient`.

    It shows a status badge (with the last close code and its meaning), the
    users (yourself marked "(you)"), the newest ``max_messages`` messages, the
    messages still waiting for the server's acknowledgement (pending), a text
    box and a Send button, and with ``show_log=True`` the raw socket events.

    Sending: Enter or Send sends the text as the learner sees it (see the module
    docstring). While connecting or reconnecting, messages are queued and shown
    as pending, then sent on ``connected``; once the client is offline for good
    (it gave up, or was closed), the box and the button are disabled.

    Args:
        client: the client to show and to send with; started by :meth:`start`,
            :meth:`connect` or :func:`chat`, not by the constructor.
        show_log: also show the raw event log (``open``, ``message``, ``error``,
            ``close`` with its code and reason).
        max_messages: how many of the newest messages are shown.
        reuse_identity: come back as the user of the widget this one replaces
            (same server url and username) when ``client`` is not started and
            has no token yet.

    Display it as the last expression of a cell, or put :attr:`box` into your
    own layout. Create it, and call every method, on the kernel's loop thread
    (in a cell, or in a task of the kernel's loop) unless a method says otherwise.
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        show_log: bool = False,
        max_messages: int = 200,
        reuse_identity: bool = True,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.client = client
        self.show_log = show_log
        self.max_messages = max_messages
        self._loop = _running_loop()
        self._thread_id = threading.get_ident()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._flushes_done = 0
        self._notice = ""  # one line under the badge: why something was not sent
        self._shown_in: str | None = None
        self._key = (client.url, client.username)
        self._reuse_identity = reuse_identity
        self._predecessor: ChatWidget | None = None  # the widget this one replaces
        self._predecessor_closed: asyncio.Future[None] | None = None

        self._build()
        self._wire()
        self._replace_predecessor()
        self._previous_on_change = client.on_change
        client.on_change = self._on_client_change
        self.refresh()

    def _build(self) -> None:
        """Make the widgets and lay them out in :attr:`box`."""
        self.status_html = widgets.HTML(layout=widgets.Layout(margin="0 0 4px 0"))
        self.status_html.add_class("wslab-status")
        self.users_html = widgets.HTML(layout=widgets.Layout(width="11em", flex="0 0 auto"))
        self.users_html.add_class("wslab-users")
        self.messages_html = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.messages_html.add_class("wslab-messages")
        self.text = _MessageBox(
            placeholder="Type a message and press Enter",
            continuous_update=True,
            layout=widgets.Layout(flex="1 1 auto", width="auto"),
        )
        self.text.add_class("wslab-input")
        self.send_button = widgets.Button(
            description="Send", button_style="primary", layout=widgets.Layout(width="6em")
        )
        self.send_button.add_class("wslab-send")
        self.log_html = widgets.HTML(layout=widgets.Layout(display="" if self.show_log else "none"))
        self.log_html.add_class("wslab-log")
        self.box = widgets.VBox(
            [
                self.status_html,
                widgets.HBox([self.users_html, self.messages_html]),
                widgets.HBox([self.text, self.send_button]),
                self.log_html,
            ],
            layout=widgets.Layout(max_width="56em"),
        )
        self.box.add_class("wslab-chat")

    def _wire(self) -> None:
        """Connect Enter, Send and the flush (see the module docstring)."""
        # The browser side of the flush: it runs there, with no kernel round trip.
        self._flush_link = widgets.jsdlink((self.text, "flush_request"), (self.text, "flush_reply"))
        self.text.on_msg(self._on_text_message)
        self.text.observe(self._on_flush_reply, names="flush_reply")
        self.send_button.on_click(self._on_send_click)

    def _replace_predecessor(self) -> None:
        """Register this widget; if it replaces one (a re-run cell), retire that one."""
        previous = registry.replace(self._key, self)
        if previous is None:
            return
        assert isinstance(previous, ChatWidget)
        self._predecessor = previous
        self._adopt_identity()
        if self._loop is not None:  # close it now, even if this widget never starts
            self._predecessor_closed = self._spawn(previous._retire())

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the client in the background; return at once.

        If this widget replaces another one, the client starts once the old one
        has closed with 1001. Kernel loop only (it needs the running loop).
        """
        if self._predecessor is None:
            self.client.start()
        else:
            self._spawn(self._start_after_predecessor())

    async def connect(self, timeout: float | None = 10.0) -> ChatWidget:
        """Start the client and wait until it is online; return the widget.

        Raises what :meth:`ChatClient.connect` raises. Kernel loop only.
        """
        await self._take_over()
        await self.client.connect(timeout)
        return self

    async def aclose(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the client with ``code``; the widget stays, showing offline. Safe twice.

        Kernel loop only.
        """
        await self.client.close(code, reason)

    async def _start_after_predecessor(self) -> None:
        await self._take_over()
        self.client.start()

    async def _take_over(self) -> None:
        """Wait until the replaced widget has closed with 1001, then take its identity."""
        previous = self._predecessor
        if previous is None:
            return
        if self._predecessor_closed is None:
            self._predecessor_closed = self._spawn(previous._retire())
        await self._predecessor_closed
        self._adopt_identity()  # again: its token may have come after the constructor's try
        self._predecessor = None  # let it go: a long session re-runs cells many times

    async def _retire(self) -> None:
        """Close for good because a new widget took this one's place."""
        self._notice = "replaced by a newer widget for this user (a re-run cell)"
        await self.client.close(CloseCode.GOING_AWAY, "replaced by a new widget")
        self.refresh()

    def _adopt_identity(self) -> None:
        """Take the replaced widget's id and token, if this client is still fresh."""
        old = self._predecessor
        if old is None or not self._reuse_identity:
            return
        self.client.take_identity(old.client.id, old.client.token)

    # ------------------------------------------------------------------ sending

    def send(self, text: str) -> bool:
        """Send ``text`` as a chat message, or queue it (pending) while (re)connecting.

        This is what Enter and the Send button call, with the box's text; tests
        may call it directly. Returns ``False``, and says why under the badge,
        when nothing was queued: the text is blank, longer than the protocol's
        limit, or the client is offline for good (re-run the cell to reconnect).
        Call it on the client's loop thread (the kernel's, in a notebook).
        """
        if not text.strip():
            return False
        if len(text) > MAX_MESSAGE_LENGTH:
            self._set_notice(f"not sent: {len(text)} characters, the limit is {MAX_MESSAGE_LENGTH}")
            return False
        if self.client.status == "offline":
            self._set_notice("not sent: offline (re-run the cell to connect again)")
            return False
        self._set_notice("")
        self._spawn(self.client.send_message(text))
        return True

    def _on_text_message(self, _box: Any, content: dict[str, Any], _buffers: Any) -> None:
        # The text view sends {"event": "submit"} on Enter (the message behind the
        # deprecated Text.on_submit); its value may still be on its way.
        if content.get("event") == "submit":
            self._request_flush()

    def _on_send_click(self, _button: Any) -> None:
        self._request_flush()

    def _request_flush(self) -> None:
        if self.client.status == "offline":
            return
        self.text.flush_request = self.text.flush_request + 1

    def _on_flush_reply(self, change: dict[str, Any]) -> None:
        reply = change["new"]
        if reply <= self._flushes_done:
            return  # the link's first copy, or a second browser answering the same flush
        self._flushes_done = reply
        text = self.text.value
        if self.send(text):
            self.text.value = ""

    # ------------------------------------------------------------------ rendering

    def refresh(self) -> None:
        """Render the client's current state into the widgets.

        The client's ``on_change`` calls it; call it yourself after changing
        :attr:`show_log` or :attr:`max_messages`. Kernel loop thread only.
        """
        client = self.client
        names = display_names(client.users)
        self.status_html.value = _status_html(client, self._notice)
        self.users_html.value = _users_html(names, client.id, client.online)
        cut = len(client.messages) > self.max_messages
        self.messages_html.value = _messages_html(
            client.messages[-self.max_messages :],
            client.pending,
            client.id,
            client.username,
            presence=list(client.presence)[-self.max_messages :],
            names=names,
            cut=cut,
        )
        self.log_html.layout.display = "" if self.show_log else "none"
        if self.show_log:
            self.log_html.value = _log_html(client.events)
        offline = client.status == "offline"
        self.text.disabled = offline
        self.send_button.disabled = offline

    def _set_notice(self, notice: str) -> None:
        if notice != self._notice:
            self._notice = notice
            self.status_html.value = _status_html(self.client, notice)

    def _on_client_change(self, client: ChatClient) -> None:
        if self._previous_on_change is not None:
            self._previous_on_change(client)
        if threading.get_ident() == self._thread_id or self._loop is None:
            self._refresh_safely()  # (no loop to hop to: not in a kernel, no front-end)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._refresh_safely)

    def _refresh_safely(self) -> None:
        # Called from inside the client's task: a rendering bug must not kill the client.
        try:
            self.refresh()
        except Exception:
            logger.exception("could not render the chat widget")

    # ------------------------------------------------------------------ display

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.box._repr_mimebundle_(**kwargs)
        # What a notebook shows in the widget's place when no kernel draws it (opened
        # from disk, a static viewer): a line that says what it is and how to get it.
        bundle["text/plain"] = self.saved_text()
        return bundle

    def saved_text(self) -> str:
        """The line a notebook keeps for this widget, shown until its cell runs. Any thread."""
        username, url = self._key[1], self._key[0]
        return f"[chat widget: {username!r} on {url}; run this cell to open it live]"

    def _ipython_display_(self) -> None:
        # chat() displays the widget and returns it: when that return value is
        # also the cell's last expression, show it once, not twice.
        request = _current_request_id()
        if request is not None and request == self._shown_in:
            return
        self._shown_in = request
        display(self._repr_mimebundle_(), raw=True)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"ChatWidget(username={self._key[1]!r}, url={self._key[0]!r})"

    # ------------------------------------------------------------------ helpers

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run ``coroutine`` as a task of the running loop; keep it referenced until done."""
        try:
            future: asyncio.Future[Any] = asyncio.ensure_future(coroutine)
        except RuntimeError:
            coroutine.close()
            raise RuntimeError(
                "call this on the kernel's event loop (in a cell, or in one of its tasks)"
            ) from None
        self._tasks.add(future)
        future.add_done_callback(self._task_done)
        return future

    def _task_done(self, future: asyncio.Future[Any]) -> None:
        self._tasks.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("chat widget task failed", exc_info=future.exception())


# ---------------------------------------------------------------------- rendering (pure)


def _status_html(client: ChatClient, notice: str = "") -> str:
    state = client.status
    if state == "reconnecting" and client.next_retry_in is not None:
        label = f"reconnecting in {client.next_retry_in:.1f} s"
    elif state == "idle":
        label = "not started"
    else:
        label = state
    colour = _BADGE_COLOURS.get(state, _BADGE_COLOURS["idle"])
    badge = (
        f'<span class="wslab-badge" data-state="{html.escape(state)}" style="display:inline-block;'
        f'padding:0 0.6em;border-radius:1em;color:#fff;background:{colour}">'
        f"{html.escape(label)}</span>"
    )
    who = f"<b>{_text(client.username)}</b> on {html.escape(client.url)}"
    lines = [f"{badge} {who}"]
    if client.truncated:
        lines.append(f'<span class="wslab-truncated"><i>{html.escape(TRUNCATED_NOTICE)}</i></span>')
    if client.was_page_reload and client.online:
        lines.append(
            f'<span class="wslab-reload" style="{_MUTED}">back within the reload grace: '
            "the others saw no leave and no join</span>"
        )
    if client.last_close is not None:
        lines.append(
            f'<span class="wslab-close" style="{_MUTED}">last close: '
            f"{html.escape(client.describe_last_close())}</span>"
        )
    if client.errors:
        error = client.errors[-1]
        lines.append(
            f'<span class="wslab-error" style="{_MUTED}">server error: '
            f"{html.escape(error.code.value)}: {_text(error.detail)}</span>"
        )
    if notice:
        lines.append(f'<span class="wslab-notice"><i>{html.escape(notice)}</i></span>')
    return (
        f'<div data-state="{html.escape(state)}" style="line-height:1.6">'
        + "<br>".join(lines)
        + "</div>"
    )


def _name(user_id: str, username: str, names: dict[str, str]) -> str:
    """A user's name as shown: with its suffix while present, else neutralized."""
    return names.get(user_id, neutralize(username))


def _text(text: str) -> str:
    """User text for HTML: bidi controls neutralized, then escaped."""
    return html.escape(neutralize(text))


def _users_html(names: dict[str, str], my_id: str, online: bool) -> str:
    """``names``: id -> the name as shown (:func:`wslab.display.display_names`)."""
    items = []
    for user_id, name in names.items():
        you = f' <span style="{_MUTED}">(you)</span>' if user_id == my_id else ""
        items.append(
            f'<li class="wslab-user" data-id="{html.escape(user_id)}">{html.escape(name)}{you}</li>'
        )
    # Not online: the list is what we last knew, not who is here now.
    fade = "" if online else "opacity:0.5;"
    return (
        f'<div style="padding:0 0.5em;border-right:{_BORDER};height:100%">'
        f'<div style="{_MUTED};font-size:0.85em">USERS ({len(items)})</div>'
        f'<ul style="list-style:none;margin:0;padding:0;{fade}">{"".join(items)}</ul></div>'
    )


def _messages_html(
    messages: Iterable[MessageEntry],
    pending: Iterable[PendingMessage],
    my_id: str,
    my_name: str,
    *,
    presence: Sequence[PresenceEvent] = (),
    names: dict[str, str] | None = None,
    cut: bool = False,
) -> str:
    """The message list: messages, joins and leaves where they happened, then pending.

    ``presence`` lines are placed after the message they came after; those from
    before the first shown message are dropped when older messages were ``cut``.
    """
    names = names or {}
    shown = list(messages)
    first = shown[0]["messageId"] if shown else None
    lines: dict[int | None, list[PresenceEvent]] = {}
    for event in presence:
        at = event.after
        if first is not None and (at is None or at < first):
            if cut:
                continue
            at = None
        lines.setdefault(at, []).append(event)

    def system(events: list[PresenceEvent]) -> list[str]:
        return [
            f'<li class="wslab-system" data-kind="{event.kind}" style="{_MUTED}"><i>'
            f"{html.escape(presence_line(event.kind, _name(event.id, event.username, names)))}"
            "</i></li>"
            for event in events
        ]

    items = system(lines.pop(None, []))
    for entry in shown:
        author = _name(entry["id"], entry["username"], names)
        items.append(_message_item(entry, mine=entry["id"] == my_id, author=author))
        items.extend(system(lines.pop(entry["messageId"], [])))
    for rest in lines.values():  # after a message no longer shown (recovered out of order)
        items.extend(system(rest))
    for message in pending:
        items.append(
            f'<li class="wslab-message mine pending" '
            f'data-client-message-id="{html.escape(message.client_message_id)}" '
            f'style="opacity:0.6"><span style="{_MUTED}">--:--:--</span> '
            f"<b>{_text(my_name)}</b> "
            f'<span class="text" style="white-space:pre-wrap">{_text(message.message)}</span>'
            f' <i style="{_MUTED}">(pending)</i></li>'
        )
    if not items:
        items.append(f'<li style="{_MUTED}"><i>No messages yet.</i></li>')
    # column-reverse keeps the scroll at the bottom, so the newest message shows.
    return (
        f'<div style="height:14em;overflow-y:auto;display:flex;flex-direction:column-reverse;'
        f'padding:0 0.5em"><ol style="list-style:none;margin:0;padding:0">'
        f"{''.join(items)}</ol></div>"
    )


def _message_item(entry: MessageEntry, *, mine: bool, author: str) -> str:
    """One message; ``author`` is the name as shown (already neutralized)."""
    ts = str(entry.get("ts", ""))
    clock = ts[11:19] if len(ts) >= 19 else ts
    return (
        f'<li class="wslab-message{" mine" if mine else ""}" '
        f'data-message-id="{int(entry["messageId"])}" data-author-id="{html.escape(entry["id"])}">'
        f'<span title="{html.escape(ts)}" style="{_MUTED}">{html.escape(clock)}</span> '
        f"<b>{html.escape(author)}</b> "
        f'<span class="text" style="white-space:pre-wrap;overflow-wrap:anywhere">'
        f"{_text(entry['message'])}</span></li>"
    )


def _log_html(events: Iterable[RawEvent]) -> str:
    lines = [str(event) for event in events][-LOG_LINES:]
    shown = [
        html.escape(line if len(line) <= _LOG_LINE_CHARS else line[:_LOG_LINE_CHARS] + "...")
        for line in lines
    ]
    body = "\n".join(shown) or "(none yet)"
    return (
        f'<div style="{_MUTED};font-size:0.85em">RAW EVENTS (newest last)</div>'
        f'<pre style="max-height:12em;overflow-y:auto;margin:0;font-size:0.85em;'
        f'white-space:pre-wrap">{body}</pre>'
    )


# ---------------------------------------------------------------------- chat()


def chat(url: str | None = None, username: str = "you", *, show_log: bool = False) -> ChatWidget:
    """Join a chat server from a notebook: make a client and a widget, start, display.

    Without ``url`` it starts (or reuses) the kernel's shared local server; stop
    it with ``await stop_shared_server()``. Safe to re-run: the new widget
    replaces the last one for the same url and username and comes back as the
    same user. Returns the widget, which is shown once even when it is also the
    cell's last expression. Kernel loop only (a cell).
    """
    if url is None:
        url = shared_server().url
    # Batched presence, as the page asks for it: a class joining at once costs each
    # widget one presence event per server tick, not one event per student.
    widget = ChatWidget(ChatClient(url, username, features=("presence",)), show_log=show_log)
    widget.start()
    display(widget)  # type: ignore[no-untyped-call]
    return widget


# ---------------------------------------------------------------------- helpers


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# IPython 9 types get_ipython and IPython 8 does not: one alias serves both for mypy.
_get_ipython: Callable[[], Any] = get_ipython


def _current_request_id() -> str | None:
    """The id of the kernel request being handled (the running cell), if any."""
    kernel = getattr(_get_ipython(), "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent()
    except Exception:
        return None
    header = parent.get("header") if isinstance(parent, dict) else None
    msg_id = header.get("msg_id") if isinstance(header, dict) else None
    return msg_id if isinstance(msg_id, str) else None
