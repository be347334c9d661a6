"""Where a server can be reached: its socket's URL, its page's URLs, public or not.

Pure apart from asking the operating system for this machine's addresses
(:func:`reachable_urls`). Any thread.
"""

from __future__ import annotations

import ipaddress
import os
import socket as socket_module
import ssl

from .admission import WILDCARD_HOSTS
from .pages import CHAT_PATH

__all__ = [
    "ServedAt",
    "is_loopback",
    "page_url",
    "proxied_page_url",
    "reachable_urls",
    "socket_url",
]


def socket_url(host: str, port: int, *, tls: bool, prefix: str = "/") -> str:
    """The chat socket's URL, e.g. ``ws://127.0.0.1:8765/chat`` (127.0.0.1 for a wildcard).

    ``prefix``: the path the chat is served below (a hub service's ``/services/<name>/``).
    """
    host = _url_host(_connectable(host))
    return f"{'wss' if tls else 'ws'}://{host}:{port}{prefix.rstrip('/')}{CHAT_PATH}"


def page_url(host: str, port: int, *, tls: bool, prefix: str = "/") -> str:
    """The chat page's URL, e.g. ``http://127.0.0.1:8765/`` (127.0.0.1 for a wildcard)."""
    return f"{'https' if tls else 'http'}://{_url_host(_connectable(host))}:{port}{prefix}"


def proxied_page_url(port: int) -> str | None:
    """The page's path through jupyter-server-proxy under JupyterHub/Binder, else None.

    ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/`` is reachable from the learner's
    browser where only the Jupyter port is.
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix:
        return None
    return f"{prefix.rstrip('/')}/proxy/{port}/"


def reachable_urls(host: str, port: int, *, tls: bool) -> list[str]:
    """Every address of the chat page a browser may use, loopback first.

    For a wildcard host (``0.0.0.0``, ``::``, ``""``) these are 127.0.0.1 (or
    ::1) and this machine's interface addresses; for any other host, the one
    page URL.
    """
    if host not in WILDCARD_HOSTS:
        return [page_url(host, port, tls=tls)]
    families = {
        "0.0.0.0": (socket_module.AF_INET,),
        "::": (socket_module.AF_INET6,),
        "": (socket_module.AF_INET, socket_module.AF_INET6),
    }[host]
    scheme = "https" if tls else "http"
    return [
        f"{scheme}://{_url_host(address)}:{port}/" for address in _interface_addresses(families)
    ]


class ServedAt:
    """The addresses of a server that listens on ``host`` and ``_port``, with ``ssl`` or not.

    A mixin: the class using it sets those three attributes. Any thread.
    """

    host: str
    _port: int
    ssl: ssl.SSLContext | None
    #: The path the page and the socket are served below (a hub service's prefix).
    path_prefix: str = "/"

    @property
    def port(self) -> int:
        """The bound port (the real one once started, even if 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """The chat socket's URL, e.g. ``ws://127.0.0.1:8765/chat``."""
        return socket_url(self.host, self._port, tls=self.ssl is not None, prefix=self.path_prefix)

    @property
    def page_url(self) -> str:
        """The browser chat page's URL, e.g. ``http://127.0.0.1:8765/``."""
        return page_url(self.host, self._port, tls=self.ssl is not None, prefix=self.path_prefix)

    @property
    def proxied_page_url(self) -> str | None:
        """The page's path through jupyter-server-proxy under JupyterHub/Binder, else None."""
        return proxied_page_url(self._port)

    @property
    def listens_publicly(self) -> bool:
        """Whether other machines may reach the server: it is bound beyond loopback."""
        return not is_loopback(self.host)

    @property
    def reachable_urls(self) -> list[str]:
        """Every address of the chat page a browser may use, loopback first."""
        return reachable_urls(self.host, self._port, tls=self.ssl is not None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a wildcard ("", "0.0.0.0" is parsed above) or a host name


def _connectable(host: str) -> str:
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _interface_addresses(families: tuple[socket_module.AddressFamily, ...]) -> list[str]:
    """This machine's addresses in these families: loopback first, then the others.

    From the host name's addresses and from the route a datagram socket would take
    to the outside (connecting a UDP socket sends nothing). Link-local IPv6 needs a
    zone a browser cannot take, and other loopback addresses are the same machine:
    both are left out.
    """
    found: list[str] = []
    loopback = {socket_module.AF_INET: "127.0.0.1", socket_module.AF_INET6: "::1"}
    for family in families:
        found.append(loopback[family])
        try:
            infos = socket_module.getaddrinfo(socket_module.gethostname(), None, family)
            found.extend(str(info[4][0]) for info in infos)
        except OSError:
            pass
        probe = "192.0.2.1" if family == socket_module.AF_INET else "2001:db8::1"
        try:
            with socket_module.socket(family, socket_module.SOCK_DGRAM) as udp:
                udp.connect((probe, 9))
                found.append(str(udp.getsockname()[0]))
        except OSError:
            pass
    addresses: list[str] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if address.is_link_local or (address.is_loopback and text not in loopback.values()):
            continue
        if str(address) not in addresses:
            addresses.append(str(address))
    return addresses
