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
thread it hops over with ``call_soon_threadsafe``. User strings travel as data
in the traits; the front end sets them with ``textContent``, never as HTML.

The view. The widget's state lives in traits of :attr:`ChatWidget.box`, an
anywidget (config, status, users, messages, presence, pending, log), assigned
whole and only on the kernel's loop. Its front end (``static/chatwidget.js``,
with the display rules of ``static/chatview.js`` that the browser page uses
too) draws them incrementally: a new message adds one item, nothing is redrawn
per frame. The reconnect policy's close meanings and the display words reach it
in the ``config`` trait (:func:`wslab.frontend.page_config`).

Why the sent text is the text you see. Enter and the Send button read the text
box in the page and send *that* text to the kernel in one message; the kernel
answers whether it took it, and only then is the box cleared (if it still holds
that text). No keystroke update can be overtaken: the text sent is the text the
learner saw when pressing Enter.

Identity. A re-run cell makes a new widget for the same server and username:
the widget it replaces (found in :data:`wslab.lab.lesson.registry`) is closed with
1001 (like a page being left) and hands its id and token to the new client
(:meth:`ChatClient.take_identity`), so the others see a reload within the
grace, not a departure and an arrival. The shared server of :func:`chat`
lives in :mod:`wslab.lab.lesson`; this module only shows a client's state.

What it shows follows the page's rules: joins and leaves as lines among the
messages, a notice when missed messages are gone, each user's tag after a name
two present users share, bidi controls neutralized.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ..errors import MissingExtraError

try:
    import anywidget
    import traitlets
    from IPython.core.getipython import get_ipython
    from IPython.display import display
except ImportError as missing:  # pragma: no cover - tested in a venv without the extra
    raise MissingExtraError(
        "the chat widget (wslab.lab.widget)", missing.name or "anywidget"
    ) from None

from ..client import ChatClient
from ..display import MAX_SHOWN
from ..frontend import page_config, widget_css, widget_esm
from ..protocol import MAX_MESSAGE_LENGTH, CloseCode
from .lesson import registry, shared_server, stop_shared_server

__all__ = ["ChatWidget", "chat", "shared_server", "stop_shared_server"]

logger = logging.getLogger("wslab.lab.widget")

LOG_LINES = 100  # raw events shown by show_log=True
_LOG_LINE_CHARS = 300


class _ChatModel(anywidget.AnyWidget):
    """The widget's state, synced to its front end (``static/chatwidget.js``).

    Every trait is assigned a whole new value, on the kernel's loop only.
    """

    _esm = widget_esm()
    _css = widget_css()
    #: :func:`wslab.frontend.page_config`: close meanings and display words.
    config: traitlets.Dict[str, Any] = traitlets.Dict().tag(sync=True)
    #: state, retryIn, url, id, username, lastClose, error, truncated, wasPageReload, notice.
    status: traitlets.Dict[str, Any] = traitlets.Dict().tag(sync=True)
    #: The present users: id, username, tag ("": the server sent none).
    users: traitlets.List[dict[str, str]] = traitlets.List().tag(sync=True)
    #: The newest ``max_messages`` entries, by messageId.
    messages: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    #: True when older messages than those in :attr:`messages` exist.
    cut = traitlets.Bool(False).tag(sync=True)
    #: Joins and leaves: kind, id, username, after (the messageId it came after).
    presence: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    pending: traitlets.List[dict[str, str]] = traitlets.List().tag(sync=True)
    log: traitlets.List[str] = traitlets.List().tag(sync=True)
    show_log = traitlets.Bool(False).tag(sync=True)


class ChatWidget:
    """A chat in a notebook, bound to a :class:`~wslab.client.ChatClient`.

    It shows a status badge (with the last close code and its meaning), the
    users (yourself marked "(you)"), the newest ``max_messages`` messages, the
    messages still waiting for the server's acknowledgement (pending), a text
    box and a Send button, and with ``show_log=True`` the raw socket events.
    What it shows is in the traits of :attr:`box`.

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
        max_messages: int = MAX_SHOWN,
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
        self._notice = ""  # one line under the badge: why something was not sent
        self._shown_in: str | None = None
        self._key = (client.url, client.username)
        self._reuse_identity = reuse_identity
        self._predecessor: ChatWidget | None = None  # the widget this one replaces
        self._predecessor_closed: asyncio.Future[None] | None = None

        #: The anywidget that holds the state and draws it.
        self.box = _ChatModel(config=page_config())
        self.box.on_msg(self._on_widget_message)
        self._replace_predecessor()
        self._previous_on_change = client.on_change
        client.on_change = self._on_client_change
        self.refresh()

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

    def handle_front_end_message(self, content: dict[str, Any]) -> None:
        """Apply one message from the widget's front end: ``{"kind": "send", "text", "n"}``.

        Enter and Send in the page send the box's text; this sends it (see
        :meth:`send`) and answers ``{"kind": "sent", "n", "ok"}``, so the page
        clears the box only when the text was taken. Tests call it directly.
        Kernel loop only.
        """
        if content.get("kind") != "send" or not isinstance(content.get("text"), str):
            return  # not ours (anywidget's own messages share the channel)
        ok = self.send(content["text"])
        self.box.send({"kind": "sent", "n": content.get("n"), "ok": ok})

    def _on_widget_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if self._loop is not None and threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self.handle_front_end_message, content)
        else:
            self.handle_front_end_message(content)

    # ------------------------------------------------------------------ state

    def refresh(self) -> None:
        """Copy the client's current state into the traits of :attr:`box`.

        The client's ``on_change`` calls it; call it yourself after changing
        :attr:`show_log` or :attr:`max_messages`. A trait whose value did not
        change sends nothing to the front end. Kernel loop thread only.
        """
        client = self.client
        box = self.box
        shown = client.messages[-self.max_messages :]
        with box.hold_sync():
            box.status = self._status()
            box.users = [
                {"id": i, "username": name, "tag": client.tags.get(i, "")}
                for i, name in client.users.items()
            ]
            box.messages = [dict(entry) for entry in shown]
            box.cut = len(client.messages) > len(shown)
            box.presence = [
                {"kind": p.kind, "id": p.id, "username": p.username, "after": p.after}
                for p in list(client.presence)[-self.max_messages :]
            ]
            box.pending = [
                {"clientMessageId": p.client_message_id, "message": p.message}
                for p in client.pending
            ]
            box.show_log = self.show_log
            box.log = _log_lines(client) if self.show_log else []

    def _status(self) -> dict[str, Any]:
        client = self.client
        error = client.errors[-1] if client.errors else None
        close = client.last_close
        return {
            "state": client.status,
            "retryIn": client.next_retry_in,
            "url": client.url,
            "id": client.id,
            "username": client.username,
            "lastClose": None if close is None else {"code": close[0], "reason": close[1]},
            "error": None if error is None else {"code": error.code.value, "detail": error.detail},
            "truncated": client.truncated,
            "wasPageReload": client.was_page_reload,
            "notice": self._notice,
        }

    def _set_notice(self, notice: str) -> None:
        if notice != self._notice:
            self._notice = notice
            self.box.status = self._status()

    def _on_client_change(self, client: ChatClient) -> None:
        if self._previous_on_change is not None:
            self._previous_on_change(client)
        if threading.get_ident() == self._thread_id or self._loop is None:
            self._refresh_safely()  # (no loop to hop to: not in a kernel, no front-end)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._refresh_safely)

    def _refresh_safely(self) -> None:
        # Called from inside the client's task: a bug here must not kill the client.
        try:
            self.refresh()
        except Exception:
            logger.exception("could not update the chat widget")

    # ------------------------------------------------------------------ display

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.box._repr_mimebundle_(**kwargs)
        data: dict[str, Any] = dict((bundle[0] if isinstance(bundle, tuple) else bundle) or {})
        # What a notebook shows in the widget's place when no kernel draws it (opened
        # from disk, a static viewer): a line that says what it is and how to get it.
        data["text/plain"] = self.saved_text()
        return data

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


def _log_lines(client: ChatClient) -> list[str]:
    """The newest raw events as lines, each cut to a readable length."""
    lines = [str(event) for event in client.events][-LOG_LINES:]
    return [
        line if len(line) <= _LOG_LINE_CHARS else line[:_LOG_LINE_CHARS] + "..." for line in lines
    ]


# ---------------------------------------------------------------------- chat()


def chat(
    url: str | None = None,
    username: str = "you",
    *,
    show_log: bool = False,
    additional_headers: Mapping[str, str] | None = None,
) -> ChatWidget:
    """Join a chat server from a notebook: make a client and a widget, start, display.

    Without ``url`` it starts (or reuses) the kernel's shared local server; stop
    it with ``await stop_shared_server()``. Safe to re-run: the new widget
    replaces the last one for the same url and username and comes back as the
    same user. Returns the widget, which is shown once even when it is also the
    cell's last expression. ``additional_headers`` go out on every handshake of
    the widget's socket, which lives in this kernel (a hub token, say: see
    :func:`wslab.classroom.join`). Kernel loop only (a cell).
    """
    if url is None:
        url = shared_server().url
    # Batched presence, as the page asks for it: a class joining at once costs each
    # widget one presence event per server tick, not one event per student.
    client = ChatClient(
        url, username, features=("presence",), additional_headers=additional_headers
    )
    widget = ChatWidget(client, show_log=show_log)
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
