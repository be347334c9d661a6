"""Check for lesson 13 (scaling out): what a ``connecting`` means when servers share a chat.

The learner writes ``claim_status(states)``: given the states in which the
servers hold an id (``"open"``: a socket of it is open there; ``"grace"``: its
last socket there closed and its grace runs), return ``"new"``, ``"reload"`` or
``"tab"``. The check starts its own Redis and three chat servers, puts a user in
each situation for real (sockets open on some servers, graces running on
others, the third server included), connects that user to the third server,
and reads what the chat did: whether the others heard ``joined``, and what
``wasPageReload`` said.

It needs ``redis-server`` (it raises :class:`~wslab.errors.MissingProgramError`,
saying how to install it, when it is missing). Callable from a notebook cell.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

from ...client import ChatClient
from ...testing.processes import RedisServer, ServerProcess
from ._common import TIMEOUT, fail, passed, run_learner, run_scenario

__all__ = ["ANSWERS", "SITUATIONS", "check_claim_status"]

CHECK = "check_claim_status"
ANSWERS = ("new", "reload", "tab")
#: The holder states on servers 1, 2 and 3, in that order, when the user connects
#: to server 3. The last one outnumbers its open socket with graces (one of them on
#: the server the user comes back to): an open socket still makes it a tab.
SITUATIONS: tuple[tuple[str, ...], ...] = (
    (),
    ("open",),
    ("grace",),
    ("open", "open"),
    ("open", "grace"),
    ("grace", "open"),
    ("grace", "grace"),
    ("open", "grace", "grace"),
)
#: Long enough that no grace of the check runs out while it runs.
GRACE = "30"

HINTS = {
    "new": "no server holds the id: nobody knows this user, so everyone hears 'joined'",
    "tab": "a socket of the id is still open on some server: this is one more tab of "
    "a user who never left, whatever the other servers hold",
    "reload": "no socket is open anywhere but a grace runs somewhere: the user is "
    "coming back within the grace (wasPageReload: true, nobody hears a thing)",
}

ClaimStatus = Callable[[list[str]], str]


async def _wait_graces(redis_url: str, user_id: str, graces: int) -> None:
    """Until Redis holds ``user_id`` in grace on ``graces`` servers (a close is async)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            states = await client.hvals(f"wslab:holders:{user_id}")
            if sum(state == "grace" for state in states) >= graces:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{user_id} not in grace on {graces} servers: {states}")
            await asyncio.sleep(0.01)  # a poll interval, not a wait for an outcome
    finally:
        await client.aclose()


def _presence_of(client: ChatClient, since: int, user_id: str) -> list[str]:
    """The ``joined`` / ``disconnected`` events about ``user_id`` in a raw log since ``since``."""
    names = []
    for event in list(client.events)[since:]:
        if event.type == "message" and isinstance(event.data, str):
            data = json.loads(event.data)
            if data["event"] in ("joined", "disconnected") and data.get("id") == user_id:
                names.append(data["event"])
    return names


async def _observe(urls: Sequence[str], redis_url: str) -> list[str]:
    """For each situation, what the chat did when the user connected to the third server."""
    async with AsyncExitStack() as clients:

        async def connect(url: str, user_id: str, token: str | None) -> ChatClient:
            client = ChatClient(url, user_id, id=user_id, token=token, reconnect=False)
            clients.push_async_callback(client.close)
            return await client.connect(TIMEOUT)

        watcher = await connect(urls[1], "watcher", None)
        observed = []
        for number, states in enumerate(SITUATIONS, 1):
            user_id = f"user-{number}"
            token = None
            holders = []
            for url, _state in zip(urls, states, strict=False):
                holder = await connect(url, user_id, token)
                token = holder.token
                holders.append(holder)
            for holder, state in zip(holders, states, strict=True):
                if state == "grace":
                    await holder.close()
            await _wait_graces(redis_url, user_id, states.count("grace"))

            mark = len(watcher.events)
            arriving = await connect(urls[2], user_id, token)
            # The log carries a "joined" before any later message of the same user.
            text = f"{user_id} arrived"
            await arriving.send_message(text)
            await watcher.wait_for_message(text, TIMEOUT)
            if "joined" in _presence_of(watcher, mark, user_id):
                observed.append("new")
            else:
                observed.append("reload" if arriving.was_page_reload else "tab")
        return observed


def live_answers() -> list[str]:
    """Run every situation on a Redis and three chat servers of its own; what each did."""
    redis = RedisServer(persist=False)
    servers: list[ServerProcess] = []
    try:
        redis.start()
        servers.extend(ServerProcess("--redis", redis.url, "--grace", GRACE) for _ in range(3))

        async def scenario() -> list[str]:
            await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
            return await _observe([str(server.url) for server in servers], redis.url)

        return run_scenario(scenario, timeout=60.0)
    finally:
        # The whole chat is thrown away with its Redis: nothing to hand over.
        for server in servers:
            server.kill()
        redis.close()


def check_claim_status(claim_status: ClaimStatus) -> None:
    """Compare ``claim_status(states)`` with a live chat of three servers on one Redis."""
    answers = []
    for states in SITUATIONS:
        answer = run_learner(CHECK, claim_status, list(states))
        if answer not in ANSWERS:
            raise fail(
                CHECK,
                f"claim_status({list(states)!r}) answered {answer!r}",
                f"answer one of {', '.join(map(repr, ANSWERS))}",
            )
        answers.append(answer)
    for states, answer, expected in zip(SITUATIONS, answers, live_answers(), strict=True):
        if answer != expected:
            raise fail(
                CHECK,
                f"claim_status({list(states)!r}) answered {answer!r}, "
                f"the live chat of three servers said {expected!r}",
                HINTS[expected],
            )
    passed(
        CHECK,
        f"your answers match a live chat of three servers on Redis in all "
        f"{len(SITUATIONS)} situations",
    )
