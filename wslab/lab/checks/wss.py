"""Check for lesson 09 (wss://): a client context that trusts one private CA.

The learner writes ``trusting_context(ca_pem)``: an :class:`ssl.SSLContext` for
a client that trusts the certificate authority given as PEM bytes, and still
verifies certificates and host names. The check inspects the context, then uses
it live: against a ``wss://`` server whose certificate that CA signed (it must
connect and chat) and against one signed by another CA (it must refuse).
Certificates are made on the spot with ``trustme``; everything is on loopback.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import trustme

from ...client import BlockingChatClient
from ...server import ChatServer
from ._common import fail, passed, run_learner

__all__ = ["check_trust", "server_context"]

CHECK = "check_trust"
WAIT = 5.0

TrustingContext = Callable[[bytes], ssl.SSLContext]


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    """A server-side context with a certificate for ``hosts`` signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(hosts or ("127.0.0.1", "localhost"))).configure_cert(context)
    return context


def _chat_over(context: ssl.SSLContext, server_ssl: ssl.SSLContext) -> str | None:
    """Chat once over wss:// with ``context``; ``None`` if it worked, else what failed."""
    with ChatServer(ssl=server_ssl) as server:
        client = BlockingChatClient(server.url, "ada", ssl=context, reconnect=False)
        try:
            client.connect(WAIT)
            client.send_message("over TLS")
            client.wait_for_message("over TLS", WAIT)
            return None
        except (ConnectionError, TimeoutError):
            errors = [e.detail for e in client.client.events if e.type == "error"]
            return errors[0] if errors else client.client.describe_last_close()
        finally:
            client.close()


def check_trust(trusting_context: TrustingContext) -> None:
    """Check ``trusting_context(ca_pem)`` by inspection, then over live wss:// servers."""
    ca, stranger = trustme.CA(), trustme.CA()
    context = run_learner(
        CHECK,
        trusting_context,
        ca.cert_pem.bytes(),
        hint="ca_pem is PEM text in bytes; cadata= takes PEM as a str (ca_pem.decode()), "
        "bytes only as DER",
    )
    if not isinstance(context, ssl.SSLContext):
        raise fail(
            CHECK,
            f"trusting_context returned {type(context).__name__}, not an ssl.SSLContext",
            "start from ssl.create_default_context()",
        )
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise fail(
            CHECK,
            "this context does not verify the server (verify_mode or check_hostname is off)",
            "never turn verification off: trust the CA instead (cadata=...)",
        )
    problem = _chat_over(context, server_context(ca))
    if problem is not None:
        raise fail(
            CHECK,
            f"could not chat with a server whose certificate the CA signed: {problem}",
            "load the CA: ssl.create_default_context(cadata=ca_pem.decode())",
        )
    if _chat_over(context, server_context(stranger)) is None:
        raise fail(
            CHECK,
            "the context also accepted a certificate from another, unknown CA",
            "trust only the CA you were given",
        )
    passed(CHECK, "verifies, trusts the given CA over wss://, refuses a stranger's certificate")
