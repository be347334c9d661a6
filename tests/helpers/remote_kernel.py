"""A kernel of a running Jupyter server, driven over its REST API and its WebSocket.

For the classroom's system tests: a hub user's spawned server starts the kernel (so
it has the environment the hub gave that server), and the test runs cells in it
as a notebook would, through the hub's proxy, with the user's token.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.client import ClientConnection, connect


@dataclass
class CellResult:
    """What one cell printed (stdout), and its error (``ename: evalue``), if any."""

    stdout: str
    error: str | None
    outputs: list[dict[str, Any]] = field(default_factory=list)


class RemoteKernel:
    """One kernel of the server at ``server_url`` (``http://proxy/user/ada/``).

    Blocking; one thread at a time. Close it to shut the kernel down.
    """

    def __init__(self, server_url: str, token: str, timeout: float = 60.0) -> None:
        self.server_url = server_url.rstrip("/") + "/"
        self.headers = {"Authorization": f"token {token}"}
        self.kernel_id = str(self._api("POST", "api/kernels", {"name": "python3"})["id"])
        self.session = uuid.uuid4().hex
        ws_url = "ws" + self.server_url[4:] + f"api/kernels/{self.kernel_id}/channels"
        self._exit = contextlib.ExitStack()
        self.socket: ClientConnection = self._exit.enter_context(
            connect(ws_url, additional_headers=self.headers, open_timeout=timeout, max_size=None)
        )

    def _api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server_url + path, data=data, method=method, headers=self.headers
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def run(self, code: str, timeout: float = 60.0) -> CellResult:
        """Execute ``code`` as one cell; wait until the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": self.session,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "version": "5.3",
        }
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        self.socket.send(json.dumps({**message, "channel": "shell", "buffers": []}))
        stdout: list[str] = []
        error: str | None = None
        outputs: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the cell did not end in {timeout:g} s: {code[:80]!r}")
            reply = json.loads(self.socket.recv(timeout=left))
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, body = reply["msg_type"], reply["content"]
            if kind == "stream" and body.get("name") == "stdout":
                stdout.append(body["text"])
            elif kind == "error":
                error = f"{body['ename']}: {body['evalue']}"
            elif kind in ("display_data", "execute_result"):
                outputs.append(body.get("data", {}))
            elif kind == "status" and body.get("execution_state") == "idle":
                return CellResult("".join(stdout), error, outputs)

    def close(self) -> None:
        """Close the socket and shut the kernel down. Safe twice."""
        self._exit.close()
        with contextlib.suppress(OSError):
            self._api("DELETE", f"api/kernels/{self.kernel_id}")

    def __enter__(self) -> RemoteKernel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
