"""Credentials kept out of logs: websockets' handshake lines with their secret headers masked.

At DEBUG level websockets logs every handshake header as ``> name: value`` (a client's
request) or ``< name: value`` (what a server received). A chat behind JupyterHub
carries the user's hub token in ``Authorization`` and the login in ``Cookie``: those
lines show ``[hidden]`` instead. Pure: any thread.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["SECRET_HEADERS", "MaskingLogger"]

#: Handshake headers whose values are credentials.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "set-cookie"})


class MaskingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``logger``, with the value of every secret header line masked."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if len(args) == 2 and str(args[0]).lower() in SECRET_HEADERS:
            args = (args[0], "[hidden]")
        super().log(level, msg, *args, **kwargs)
