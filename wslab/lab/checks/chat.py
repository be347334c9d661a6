"""Check for lesson 08 (the chat, all together): a small chat bot.

The learner writes ``bot_reply(entry, bot_id)``: the bot's answer to one chat
message entry, or ``None``. The check first asks it about single messages, then
runs it as a real bot in a live chat (a ChatServer on loopback, the bot and a
person as two BlockingChatClients, each on its own thread) and compares the
whole conversation with the expected one.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable

from ...client import BlockingChatClient
from ...protocol import MessageEntry
from ...server import ChatServer
from ._common import CheckFailed, fail, learner_raised, passed, run_learner

__all__ = ["check_bot"]

CHECK = "check_bot"
BOT_ID = "bot-7f3a"  # not its name: the bot knows itself by id
WAIT = 5.0

BotReply = Callable[[MessageEntry, str], "str | None"]


def _entry(message: str, *, user_id: str = "ada-1", username: str = "ada") -> MessageEntry:
    return {
        "messageId": 7,
        "id": user_id,
        "username": username,
        "message": message,
        "ts": "2026-01-01T00:00:00.000Z",
    }


# (entry, the answer, the hint if the learner's answer differs)
CASES: tuple[tuple[MessageEntry, str | None, str], ...] = (
    (_entry("!hello"), "hello, ada!", '"!hello" gets "hello, <username>!"'),
    (
        _entry("!hello", username="Grace Hopper"),
        "hello, Grace Hopper!",
        "take the username from the entry",
    ),
    (_entry("!echo hi there"), "hi there", '"!echo <text>" gets "<text>"'),
    (
        _entry("!echo !echo twice"),
        "!echo twice",
        'only the first "!echo " is the command; the rest is the text, as it is',
    ),
    (_entry("!hellothere"), None, '"!hello" is the whole message; anything else is not it'),
    (
        _entry("!echoes hi"),
        None,
        '"!echo" is a command only with a space after it: "!echoes hi" is not one',
    ),
    (
        _entry("!hello", user_id="ada-2", username="bot"),
        "hello, bot!",
        "a person may be called bot: know the bot by its id (bot_id), not by a name",
    ),
    (
        _entry("!hello", user_id=BOT_ID, username="helper"),
        None,
        "the bot's own message, under another name: compare entry['id'] with bot_id",
    ),
    (_entry("just chatting"), None, "stay silent (return None) unless a command is asked"),
    (
        _entry("!echo   "),
        None,
        "an echo of nothing would be only spaces, which the server refuses: return None",
    ),
    (
        _entry("!hello", user_id=BOT_ID, username="bot"),
        None,
        "never answer the bot's own messages (entry['id'] == bot_id), or two bots "
        "(or one) can talk forever",
    ),
    (
        _entry("!echo !hello", user_id=BOT_ID, username="bot"),
        None,
        "never answer the bot's own messages",
    ),
)

# What the person types, and the conversation the live chat must show.
SCRIPT = ("!hello", "just chatting", "!echo !hello")
EXPECTED = [
    ("ada", "!hello"),
    ("bot", "hello, ada!"),
    ("ada", "just chatting"),
    ("ada", "!echo !hello"),
    ("bot", "!hello"),
    ("ada", "!echo done"),
    ("bot", "done"),
]


def _check_cases(bot_reply: BotReply) -> None:
    for entry, expected, hint in CASES:
        answer = run_learner(CHECK, bot_reply, copy.copy(entry), BOT_ID)
        if answer != expected:
            raise fail(
                CHECK,
                f"to {entry['username']!r} (id {entry['id']!r}) writing {entry['message']!r} "
                f"the bot answered {answer!r}, expected {expected!r}",
                hint,
            )


def _run_live(
    bot_reply: BotReply,
) -> tuple[list[tuple[str, str]], list[tuple[BaseException, MessageEntry]]]:
    """Run the bot in a real chat; return the conversation and the bot's errors."""
    errors: list[tuple[BaseException, MessageEntry]] = []
    replies: set[asyncio.Future[str]] = set()  # keep the send tasks alive until done
    server = ChatServer(grace=0).start()
    bot = person = None
    try:
        bot = BlockingChatClient(server.url, "bot", id=BOT_ID, reconnect=False)
        client = bot.client

        def on_message(entry: MessageEntry) -> None:
            # Runs on the bot's own loop thread, like a browser's onmessage.
            try:
                answer = bot_reply(copy.copy(entry), client.id)
            except BaseException as error:  # reported after the run, in the caller's thread
                errors.append((error, entry))
                return
            if answer is not None:
                reply = asyncio.ensure_future(client.send_message(answer))
                replies.add(reply)
                reply.add_done_callback(replies.discard)

        client.on_message = on_message
        bot.connect(WAIT)
        person = BlockingChatClient(server.url, "ada", id="ada-1", reconnect=False).connect(WAIT)
        person.send_message(SCRIPT[0])
        person.wait_for(lambda c: len(c.messages) >= 2 or bool(errors), WAIT)
        for text in SCRIPT[1:]:
            person.send_message(text)
        person.wait_for(lambda c: len(c.messages) >= 5 or bool(errors), WAIT)
        # Everything the bot answers to the lines above is in before the echo of "done".
        person.send_message("!echo done")
        person.wait_for(lambda c: c.texts()[-1:] == ["done"] or bool(errors), WAIT)
        return [(m["username"], m["message"]) for m in person.messages], errors
    except TimeoutError:
        conversation = [(m["username"], m["message"]) for m in person.messages] if person else []
        return conversation, errors
    finally:
        for chat_client in (person, bot):
            if chat_client is not None:
                chat_client.close()
        server.stop()


def check_bot(bot_reply: BotReply) -> None:
    """Ask ``bot_reply`` about single messages, then run it as a bot in a live chat."""
    _check_cases(bot_reply)
    conversation, errors = _run_live(bot_reply)
    if errors:
        error, entry = errors[0]
        if isinstance(error, NotImplementedError):
            raise fail(CHECK, "not implemented yet", "replace the raise line with your code")
        if isinstance(error, CheckFailed):
            raise error
        raise learner_raised(
            CHECK,
            bot_reply,
            (entry, BOT_ID),
            error,
            "in the live chat: the entry is a dict with messageId, id, username, message, ts",
        )
    if conversation != EXPECTED:
        shown = "; ".join(f"{who}: {text}" for who, text in conversation[:10])
        raise fail(
            CHECK,
            f"the live chat went: {shown}",
            "answer commands only, and never the bot's own messages",
        )
    passed(CHECK, f"{len(CASES)} single messages, then a live chat of {len(EXPECTED)} lines")
