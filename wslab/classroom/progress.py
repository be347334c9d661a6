"""The checks' verdicts go to the class: one connection per kernel, never in a check's way.

In a hub user's server whose class chat can be found and joined (see
:func:`~wslab.classroom.join.address`), every exercise check's verdict also goes
to the class as ``progress`` ``{exercise, passed}``; the chat relays it to the
teachers only. The first verdict the class receives prints one line in the
notebook saying so. Outside a hub nothing happens and nothing is printed.

The kernel has one :class:`ProgressReporter` (:func:`kernel_reporter`). It joins
the class on a loop thread of its own, started when the checks are imported, so
that a check never waits for the hub or the chat:

    report(exercise, passed)   kernel thread: keep the newest verdict per exercise,
                               hand the sending to the reporter's thread, return
    the reporter's thread      finds the chat (one hub request), joins, reconnects;
                               sends what is unsent whenever it is online

A class that cannot be reached costs a check nothing but the first check's short
wait (:data:`SETTLE_SECONDS`) while the first join is still under way; the
verdicts stay unsent until the chat is back. A client that stopped for good (its
token refused, a teacher's kick) tries once more with each new verdict.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..client import ChatClient
from ..errors import ClassroomError
from ..loopthread import LoopThread
from ..protocol import Progress, encode
from .join import ClassroomAddress, address

__all__ = ["SETTLE_SECONDS", "ProgressReporter", "kernel_reporter"]

logger = logging.getLogger("wslab.classroom")

#: The longest a kernel's first check waits for the first join to the class to end.
SETTLE_SECONDS = 2.0
#: The line printed once, with the first verdict the class receives.
NOTICE = "Your check verdicts go to the class chat {service!r} as {user}: your teachers see them."


class ProgressReporter:
    """A kernel's verdicts to the class chat, on a thread of its own. See the module text.

    Args:
        environ: where the hub's variables are read (``os.environ`` by default).
        find: finds the chat from ``environ`` (:func:`~wslab.classroom.join.address`).
        settle: how long the first report waits for the first join to end.
        options: more arguments for the reporter's :class:`~wslab.client.ChatClient`.

    :meth:`report` and :meth:`start` may be called from any thread but the reporter's.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        find: Callable[..., ClassroomAddress] = address,
        settle: float = SETTLE_SECONDS,
        **options: Any,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._find = find
        self._settle = settle
        self._options = options
        self._lock = threading.Lock()
        self._unsent: dict[str, bool] = {}  # exercise -> passed, newest verdict only
        self._thread: LoopThread | None = None
        self._settled = threading.Event()  # the first join ended, in or out
        self._waited = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: The class chat's address, once found.
        self.address: ClassroomAddress | None = None
        #: The reporter's client, once the chat is found.
        self.client: ChatClient | None = None
        #: Why the class cannot be joined, if it cannot (one line).
        self.problem: str | None = None
        #: Whether the notebook was told (once) that its verdicts go to the class.
        self.announced = False

    def on_hub(self) -> bool:
        """Whether this kernel runs in a hub user's server (the hub's variables are set)."""
        env = self._environ
        return bool(env.get("JUPYTERHUB_API_URL") and env.get("JUPYTERHUB_API_TOKEN"))

    def start(self) -> bool:
        """Start joining the class in the background, once; return whether on a hub.

        Returns at once. Any thread but the reporter's.
        """
        if not self.on_hub():
            return False
        with self._lock:
            if self._thread is not None:
                return True
            self._thread = LoopThread("wslab-class-progress")
        self._thread.start()
        self._thread.submit(self._join())
        return True

    def report(self, exercise: str, passed: bool) -> str | None:
        """Send a check's verdict to the class, in the background.

        Returns the line to print when the class has this kernel's verdicts for
        the first time, else ``None`` (always ``None`` outside a hub). Only the
        first call may wait, at most ``settle`` seconds, while the first join is
        under way. Any thread but the reporter's (the kernel's, in a check).
        """
        if not self.start():
            return None
        with self._lock:
            self._unsent[exercise] = passed
        thread = self._thread
        assert thread is not None
        thread.submit(self._send_unsent())
        if not self._waited:
            self._waited = True
            self._settled.wait(self._settle)
        client, found = self.client, self.address
        if self.announced or client is None or found is None or not client.online:
            return None
        self.announced = True
        return NOTICE.format(service=found.service, user=found.user)

    def stop(self) -> None:
        """Close the reporter's connection and stop its thread (tests). Safe twice."""
        thread = self._thread
        if thread is None or not thread.running:
            return
        if self.client is not None:
            thread.call(self.client.close(), 10.0)
        thread.stop()

    @property
    def unsent(self) -> dict[str, bool]:
        """The verdicts not yet sent, per exercise (a copy). Any thread."""
        with self._lock:
            return dict(self._unsent)

    # ------------------------------------------------------------------ the reporter's thread

    async def _join(self) -> None:
        try:
            found = await asyncio.to_thread(self._find, environ=self._environ)
        except ClassroomError as error:
            self.problem = str(error)
            logger.info("check verdicts stay in this notebook: %s", error)
            self._settled.set()
            return
        client = found.client(max_log=100, **self._options)
        client.on_connected = lambda _event: self._spawn(self._send_unsent())
        self.address, self.client = found, client
        client.start()
        # Settled by the first attempt's end: joined, refused for good, or retrying (the
        # chat down: the verdicts wait, the checks do not).
        await client.wait_for(lambda c: c.status in ("online", "offline", "reconnecting"), None)
        if not client.online:
            self.problem = f"the class chat cannot be joined: {client.describe_last_close()}"
            logger.info("check verdicts stay in this notebook for now: %s", self.problem)
        self._settled.set()

    async def _send_unsent(self) -> None:
        """Send every unsent verdict while online; one that fails stays unsent."""
        client = self.client
        if client is not None and client.status == "offline":
            client.start()  # refused or kicked before: a new verdict tries once more
        if client is None or not client.online:
            return  # sent on the next connected
        with self._lock:
            batch, self._unsent = self._unsent, {}
        for exercise, passed in batch.items():
            try:
                await client.send_raw(encode(Progress(exercise, passed)))
            except Exception:  # closed meanwhile: the next connected sends it
                with self._lock:
                    self._unsent.setdefault(exercise, passed)  # unless a newer one came

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_kernel_reporter: ProgressReporter | None = None


def kernel_reporter() -> ProgressReporter:
    """The kernel's one :class:`ProgressReporter` (made on first use). Any thread."""
    global _kernel_reporter
    if _kernel_reporter is None:
        _kernel_reporter = ProgressReporter()
    return _kernel_reporter
