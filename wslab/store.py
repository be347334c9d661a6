"""Durable history and identity tokens in SQLite (the standard library's sqlite3).

With a store, a restarted server keeps its room id, its messages, the
``messageId`` sequence and every id's token. The room writes each message
through :meth:`SQLiteStore.save_message`, which commits before it returns, and
only then acknowledges the message: a server killed at any instant has lost no
message it acknowledged.

Call it from one thread at a time (the server's loop thread).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3

from .protocol import MessageEntry

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (user_id TEXT PRIMARY KEY, token TEXT NOT NULL);
"""


class SQLiteStore:
    """A :class:`~wslab.room.HistoryStore` in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # The server opens the store on its caller's thread and writes on its own.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # committed means on disk
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'room_id'").fetchone()
        if row is None:
            self._room_id = secrets.token_hex(8)
            self._db.execute("INSERT INTO meta VALUES ('room_id', ?)", (self._room_id,))
        else:
            self._room_id = row[0]

    def room_id(self) -> str:
        return self._room_id

    def load_messages(self, limit: int) -> list[MessageEntry]:
        rows = self._db.execute(
            "SELECT entry FROM messages ORDER BY message_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [json.loads(entry) for (entry,) in reversed(rows)]

    def last_message_id(self) -> int:
        (last,) = self._db.execute("SELECT COALESCE(MAX(message_id), 0) FROM messages").fetchone()
        return int(last)

    def load_tokens(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT user_id, token FROM tokens").fetchall())

    def save_message(self, entry: MessageEntry) -> None:
        # Autocommit mode: the INSERT is its own transaction, on disk when it returns.
        self._db.execute(
            "INSERT INTO messages VALUES (?, ?)",
            (entry["messageId"], json.dumps(entry, ensure_ascii=False)),
        )

    def save_token(self, user_id: str, token: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO tokens VALUES (?, ?)", (user_id, token))

    def close(self) -> None:
        """Close the database file."""
        self._db.close()
