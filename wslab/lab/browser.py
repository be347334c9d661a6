"""BrowserSocket: a real browser ``WebSocket``, opened by the notebook's page, seen from Python.

In a cell::

    from wslab import BrowserSocket
    ws = BrowserSocket()                 # the shared lesson server, as the browser reaches it
    ws                                   # shows a live log, as the browser's DevTools would
    await ws.wait_for("open")
    ws.send('{"event": "connecting", "id": "b1", "username": "Browser"}')
    print(await ws.wait_for("message"))
    ws.close()                           # no code: the browser sends none, and reads 1005

How it works. The front end (a small ES module run by anywidget, no build step)
creates ``new WebSocket(url)`` in the page JupyterLab runs in, sets
``binaryType = "arraybuffer"`` and reports every DOM event to the kernel as a
custom widget message. Commands go the other way as a synced list
(:attr:`_SocketModel.commands`), so none is lost if the front end is still
loading when a cell sends::

    kernel                                        the page (the learner's browser)
    send() / close()  --commands (synced)-->      ws.send(...) / ws.close(...)
    events, ready_state  <--custom messages--     open / message / error / close

Without a front end (a plain kernel, nbval, a closed tab) nothing happens in a
browser: :meth:`BrowserSocket.wait_for` raises a ``TimeoutError`` that says to
open the notebook in JupyterLab, after its timeout; nothing hangs.

Threads. Events are applied on the kernel's loop: the widget message handler
hops over with ``call_soon_threadsafe`` if it ever runs on another thread.
Everything the log shows is set with ``textContent`` in the page, so data from
the network is never read as HTML.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import MissingExtraError

try:
    import anywidget
    import traitlets
except ImportError as missing:  # pragma: no cover - tested in a venv without the extra
    raise MissingExtraError(
        "the browser socket (wslab.lab.browser)", missing.name or "anywidget"
    ) from None

__all__ = ["BrowserSocket"]

CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3
READY_STATES = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")
EVENT_TYPES = ("open", "message", "error", "close")

_ESM = r"""
const TYPES = ["open", "message", "error", "close"];
const SOCKETS = (globalThis.__wslabBrowserSockets ??= new Map());
const LOG_LINES = 200;

function resolveUrl(url) {
  // A path (the proxied server under JupyterHub) is resolved against this page,
  // switching http -> ws and https -> wss.
  const resolved = new URL(url, location.href);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

function preview(data) {
  if (typeof data === "string") {
    return data.length > 120 ? data.slice(0, 120) + "…" : data;
  }
  const bytes = Array.from(new Uint8Array(data).slice(0, 24));
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ") +
    (data.byteLength > 24 ? " …" : "");
}

function byteLength(data) {
  return typeof data === "string" ? new TextEncoder().encode(data).length : data.byteLength;
}

function initialize({ model }) {
  const start = performance.now();
  const seconds = () => Math.round(performance.now() - start) / 1000;
  const state = { lines: [], views: new Set(), done: 0, ws: null };
  // render() gets another model object than initialize(): find the state by key.
  SOCKETS.set(model.get("key"), state);

  function log(line) {
    state.lines.push(line);
    if (state.lines.length > LOG_LINES) state.lines.shift();
    for (const view of state.views) view(line);
  }

  function report(content, buffers) {
    model.send(content, undefined, buffers);
  }

  let ws;
  try {
    ws = new WebSocket(resolveUrl(model.get("url")));
  } catch (error) {
    // A bad URL throws at once: the browser fires no event at all.
    log({ t: seconds(), dir: "!", type: "exception", detail: String(error) });
    report({ kind: "exception", name: error.name, message: error.message, t: seconds() });
    return;
  }
  state.ws = ws;
  ws.binaryType = "arraybuffer";
  report({ kind: "hello", url: ws.url, readyState: ws.readyState, t: seconds() });

  for (const type of TYPES) {
    ws.addEventListener(type, (event) => {
      const t = seconds();
      const content = { kind: "event", type, readyState: ws.readyState, t };
      const buffers = [];
      let detail = "";
      if (type === "message") {
        if (typeof event.data === "string") {
          content.data = event.data;
        } else {
          content.binary = true;
          buffers.push(event.data);
        }
        detail = `${byteLength(event.data)} B  ${preview(event.data)}`;
      } else if (type === "close") {
        content.code = event.code;
        content.reason = event.reason;
        content.wasClean = event.wasClean;
        detail = `code=${event.code} wasClean=${event.wasClean}` +
          (event.reason ? ` reason=${event.reason}` : "");
      }
      log({ t, dir: type === "message" ? "↓" : "·", type, detail });
      report(content, buffers);
    });
  }

  function run(command) {
    try {
      if (command.op === "send") {
        const data = command.data;
        ws.send(data);
        const frame = typeof data === "string" ? data : data.buffer.slice(
          data.byteOffset, data.byteOffset + data.byteLength);
        log({ t: seconds(), dir: "↑", type: "send",
              detail: `${byteLength(frame)} B  ${preview(frame)}` });
      } else if (command.op === "close") {
        if (command.code === null) ws.close();
        else if (command.reason === null) ws.close(command.code);
        else ws.close(command.code, command.reason);
        log({ t: seconds(), dir: "↑", type: "close()",
              detail: command.code === null ? "no code" : `code=${command.code}` });
      }
    } catch (error) {
      // e.g. send() while CONNECTING throws InvalidStateError: no event fires.
      log({ t: seconds(), dir: "!", type: "exception", detail: `${error.name}: ${error.message}` });
      report({ kind: "exception", name: error.name, message: error.message, t: seconds() });
    }
  }

  function runNew() {
    const commands = model.get("commands");
    while (state.done < commands.length) run(commands[state.done++]);
  }
  model.on("change:commands", runNew);
  runNew();

  return () => {
    model.off("change:commands", runNew);
    SOCKETS.delete(model.get("key"));
    if (ws.readyState < 2) ws.close(1000, "widget closed");
  };
}

function render({ model, el }) {
  const state = SOCKETS.get(model.get("key"));
  const box = document.createElement("div");
  box.className = "wslab-browser-socket";
  box.style.cssText = "font: 12px var(--jp-code-font-family, monospace); " +
    "border: 1px solid var(--jp-border-color2, #d9dee6); max-height: 16em; overflow: auto; " +
    "padding: 4px; white-space: pre;";
  const title = document.createElement("div");
  title.className = "wslab-browser-socket-url";
  title.style.cssText = "color: var(--jp-ui-font-color2, #5b6675);";
  title.textContent = "WebSocket " + (state && state.ws ? state.ws.url : model.get("url"));
  box.appendChild(title);
  const list = document.createElement("ol");
  list.style.cssText = "list-style: none; margin: 0; padding: 0;";
  box.appendChild(list);
  el.appendChild(box);

  function show(line) {
    const item = document.createElement("li");
    item.className = "wslab-log-line";
    item.dataset.type = line.type;
    // textContent only: frames from the network are never read as HTML.
    item.textContent = `${line.t.toFixed(3).padStart(8)}  ${line.dir}  ` +
      `${line.type.padEnd(9)} ${line.detail || ""}`;
    list.appendChild(item);
    while (list.childElementCount > LOG_LINES) list.firstChild.remove();
    box.scrollTop = box.scrollHeight;
  }
  if (!state) {
    title.textContent += " (no socket: this front end did not initialize it)";
    return;
  }
  state.lines.forEach(show);
  state.views.add(show);
  return () => state.views.delete(show);
}

export default { initialize, render };
"""


class _SocketModel(anywidget.AnyWidget):
    """The widget itself: the URL and the commands, synced to the front end."""

    _esm = _ESM
    url = traitlets.Unicode("").tag(sync=True)
    key = traitlets.Unicode().tag(sync=True)  # finds the socket of this model in the page
    commands: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)


class BrowserSocket:
    """A ``WebSocket`` opened by the learner's browser, every DOM event mirrored here.

    Args:
        url: the socket URL as the *browser* must reach it; a path (``/user/x/proxy/
            8765/chat``) is resolved against the page's address (``http`` becomes
            ``ws``). ``None`` means the shared lesson server's ``/chat``: through
            jupyter-server-proxy under JupyterHub/Binder, ``ws://127.0.0.1:PORT/chat``
            otherwise.

    Attributes:
        events: one dict per DOM event, in order: ``type`` (``open``, ``message``,
            ``error``, ``close``), ``data`` (``str``, or ``bytes`` for a binary
            message), ``code``, ``reason``, ``wasClean`` (a ``close``; else ``None``),
            ``readyState`` after the event, and ``t``: seconds since the socket was
            created, by the browser's clock.
        exceptions: what the browser threw instead of firing an event (``send()``
            while connecting, a bad URL), as ``"Name: message"``.

    The socket opens as soon as a front end (JupyterLab in a browser) creates the
    widget, displayed or not. Display the object to see a live log, as the
    browser's DevTools show it. Create it and call its methods on the kernel's
    loop thread (in a cell).
    """

    def __init__(self, url: str | None = None) -> None:
        if url is None:
            url = _lesson_server_url()
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.exceptions: list[str] = []
        self.ready_state = CONNECTING
        self.front_end_seen = False
        self._cursors: dict[str, int] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._loop = _running_loop()
        self._thread_id = threading.get_ident()
        self.widget = _SocketModel(url=url, key=secrets.token_hex(8))
        self.widget.on_msg(self._on_widget_message)

    # ------------------------------------------------------------------ commands

    def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Ask the browser to send one frame: text for ``str``, binary for bytes.

        Like ``ws.send`` it returns at once; if the browser refuses (not open yet)
        the refusal shows in :attr:`exceptions` and the log. Kernel loop only.
        """
        if isinstance(data, str):
            frame: str | bytes = data
        elif isinstance(data, (bytes, bytearray, memoryview)):
            frame = bytes(data)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")
        self._command({"op": "send", "data": frame})

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Ask the browser to close: ``ws.close()``, ``ws.close(code)`` or both arguments.

        Without a code the browser sends a close frame with no code, so both sides
        read 1005 (no status received). A browser only lets a page send 1000 or
        3000-4999, and a reason of at most 123 UTF-8 bytes. Kernel loop only.

        Raises:
            ValueError: a code or reason the browser would refuse.
        """
        if code is None and reason is not None:
            raise ValueError("a reason needs a code: the browser sends no reason without one")
        if code is not None and code != 1000 and not 3000 <= code <= 4999:
            raise ValueError(f"a browser may only send 1000 or 3000-4999, not {code}")
        if reason is not None and len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 UTF-8 bytes")
        self._command({"op": "close", "code": code, "reason": reason})

    async def wait_for(self, type: str, timeout: float = 10.0) -> dict[str, Any]:
        """Return the next event of ``type``: the first one no earlier call returned.

        ``wait_for("message")`` twice gives the first two messages. Kernel loop only.

        Raises:
            ValueError: ``type`` is not ``open``, ``message``, ``error`` or ``close``.
            TimeoutError: no such event within ``timeout`` seconds; when no front
                end ever answered, it says to open the notebook in JupyterLab.
        """
        if type not in EVENT_TYPES:
            raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}, not {type!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self._next_of(type)
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(self._timeout_message(type, timeout))
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    @property
    def ready_state_name(self) -> str:
        """:attr:`ready_state` as the browser names it (``OPEN``, ``CLOSED``, ...)."""
        return READY_STATES[self.ready_state]

    def summary(self) -> list[str]:
        """One short line per event: ``open``, ``message <text>``, ``close 1005 clean``."""
        return [_summarize(event) for event in self.events]

    # ------------------------------------------------------------------ front end

    def handle_front_end_message(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        """Apply one message from the front end (an event, a hello, an exception).

        The widget's message handler calls this; tests call it directly. Kernel
        loop only.
        """
        kind = content.get("kind")
        if kind == "hello":
            self.front_end_seen = True
            self.ready_state = int(content.get("readyState", CONNECTING))
        elif kind == "exception":
            self.front_end_seen = True
            self.exceptions.append(f"{content.get('name')}: {content.get('message')}")
        elif kind == "event":
            self.front_end_seen = True
            self.events.append(_event_from(content, buffers))
            self.ready_state = int(content.get("readyState", self.ready_state))
        else:
            return  # not ours (anywidget's own messages share the channel)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _on_widget_message(self, _widget: Any, content: Any, buffers: Sequence[Any]) -> None:
        if not isinstance(content, dict):
            return
        if self._loop is not None and threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self.handle_front_end_message, content, buffers)
        else:
            self.handle_front_end_message(content, buffers)

    # ------------------------------------------------------------------ display

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):  # (data, metadata)
            bundle[0]["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return f"BrowserSocket({self.url!r})"

    # ------------------------------------------------------------------ helpers

    def _command(self, command: dict[str, Any]) -> None:
        self.widget.commands = [*self.widget.commands, command]

    def _next_of(self, type: str) -> dict[str, Any] | None:
        start = self._cursors.get(type, 0)
        for index in range(start, len(self.events)):
            if self.events[index]["type"] == type:
                self._cursors[type] = index + 1
                return self.events[index]
        return None

    def _timeout_message(self, type: str, timeout: float) -> str:
        if not self.front_end_seen:
            return (
                f"no {type!r} event within {timeout:g} s: no browser front end answered. "
                "The socket lives in the page that shows the notebook: open this notebook "
                "in JupyterLab in a browser and run the cell there (a plain kernel, nbval "
                "or nbconvert has no browser)."
            )
        seen = ", ".join(_summarize(e) for e in self.events) or "none"
        return f"no {type!r} event within {timeout:g} s (events so far: {seen})"


def _event_from(content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
    data: str | bytes | None = content.get("data")
    if content.get("binary"):
        data = bytes(buffers[0]) if buffers else b""
    is_close = content.get("type") == "close"
    return {
        "type": content.get("type"),
        "data": data,
        "code": content.get("code") if is_close else None,
        "reason": content.get("reason") if is_close else None,
        "wasClean": content.get("wasClean") if is_close else None,
        "readyState": content.get("readyState"),
        "t": content.get("t"),
    }


def _summarize(event: dict[str, Any]) -> str:
    if event["type"] == "message":
        return f"message {event['data']!r}"
    if event["type"] == "close":
        clean = "clean" if event["wasClean"] else "not clean"
        return f"close {event['code']} {clean}" + (
            f" reason={event['reason']!r}" if event["reason"] else ""
        )
    return str(event["type"])


def _lesson_server_url() -> str:
    """The shared lesson server's socket URL, as the notebook's browser reaches it."""
    from .widget import shared_server

    server = shared_server()
    proxied = server.proxied_page_url
    if proxied is not None:
        return proxied + "chat"  # a path: the page resolves it, https -> wss
    return server.url


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
