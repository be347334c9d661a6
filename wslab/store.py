"""Durable history and identity tokens in SQLite (the standard library's sqlite3).

With a store, a restarted server keeps its room id, its messages, the
``messageId`` sequence, every id's token and the secret users' tags come from.
The room writes each message through :meth:`SQLiteStore.save_message`, which
commits before it returns, and only then acknowledges the message: a server
killed at any instant has lost no message it acknowledged.

One store belongs to one server: the file is locked (SQLite's exclusive locking
mode) from the moment it is opened until :meth:`SQLiteStore.close`, so a second
server on the same file refuses to start with a :class:`StoreError` instead of
handing out the same ``messageId`` twice. The lock is the operating system's:
a server that dies releases it.

Call it from one thread at a time (the server's loop thread).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable

from .display import new_tag_key
from .errors import StoreError
from .protocol import MessageEntry

__all__ = ["SQLiteStore", "StoreError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (user_id TEXT PRIMARY KEY, token TEXT NOT NULL);
"""
_COLUMNS = {
    "meta": ["key", "value"],
    "messages": ["message_id", "entry"],
    "tokens": ["user_id", "token"],
}


class SQLiteStore:
    """A :class:`~wslab.room.HistoryStore` in one SQLite file, locked while open.

    Raises:
        StoreError: the file's directory is missing, the file cannot be read or
            written, is not a wslab store, or another server holds it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        _check_path(self.path)
        try:
            # The server opens the store on its caller's thread and writes on its own.
            # timeout=0: a store held by another server is an error now, not in 5 s.
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=0
            )
        except sqlite3.Error as error:
            raise StoreError(f"cannot open store {self.path}: {error}") from None
        try:
            self._room_id = self._open()
            self._tag_key = self._meta("tag_key", new_tag_key)
        except sqlite3.Error as error:
            self._db.close()
            raise StoreError(_explain(self.path, error)) from None
        except StoreError:
            self._db.close()
            raise

    def _open(self) -> str:
        db = self._db
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # held until close()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # committed means on disk
        # An empty write transaction takes the exclusive lock now, not at the first message.
        db.execute("BEGIN EXCLUSIVE")
        db.execute("COMMIT")
        db.executescript(_SCHEMA)
        for table, columns in _COLUMNS.items():
            found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            if found != columns:
                raise StoreError(
                    f"store {self.path} is a SQLite file but not a wslab store"
                    f" (table {table!r} has columns {found})"
                )
        return self._meta("room_id", lambda: secrets.token_hex(8))

    def _meta(self, key: str, make: Callable[[], str]) -> str:
        """The stored value of ``key``; made and stored the first time."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0])
        value = make()
        self._db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
        return value

    def room_id(self) -> str:
        return self._room_id

    def tag_key(self) -> str:
        return self._tag_key

    def load_messages(self, limit: int) -> list[MessageEntry]:
        rows = self._db.execute(
            "SELECT entry FROM messages ORDER BY message_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [json.loads(entry) for (entry,) in reversed(rows)]

    def load_messages_after(self, message_id: int, limit: int) -> list[MessageEntry]:
        rows = self._db.execute(
            "SELECT entry FROM messages WHERE message_id > ? ORDER BY message_id LIMIT ?",
            (message_id, limit),
        ).fetchall()
        return [json.loads(entry) for (entry,) in rows]

    def last_message_id(self) -> int:
        (last,) = self._db.execute("SELECT COALESCE(MAX(message_id), 0) FROM messages").fetchone()
        return int(last)

    def load_token(self, user_id: str) -> str | None:
        row = self._db.execute("SELECT token FROM tokens WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else str(row[0])

    def load_tokens(self) -> dict[str, str]:
        """Every id's token (for inspection; the room asks for one id at a time)."""
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
        """Close the database file and release its lock. Safe to call twice."""
        self._db.close()


def _check_path(path: str) -> None:
    """Refuse paths SQLite would report obscurely, each with one line."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreError(f"store directory does not exist: {directory}")
    if os.path.isdir(path):
        raise StoreError(f"store path is a directory, not a file: {path}")
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"store file is not readable and writable: {path}")
    elif not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create store {path}: its directory is not writable")


def _explain(path: str, error: sqlite3.Error) -> str:
    text = str(error)
    if "locked" in text or "busy" in text:
        return f"store {path} is in use by another server (it is locked)"
    if "not a database" in text or "malformed" in text:
        return f"store {path} is not a SQLite database, or it is corrupt"
    if "readonly" in text or "read-only" in text:
        return f"store {path} is read-only (the server must write to it)"
    return f"cannot use store {path}: {text}"
