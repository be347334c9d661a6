"""Test helpers: real parts in processes of their own, and a clock moved by hand.

- :class:`RedisServer`: a real ``redis-server`` on a free loopback port;
- :class:`ServerProcess`: ``python -m wslab serve`` in a process, to SIGKILL and restart;
- :class:`JupyterHubProcess`: a real JupyterHub and its proxy on free loopback ports;
- :class:`FakeClock`: time that moves only when told to;
- :mod:`wslab.testing.rooms`: a room on either engine (memory or a real Redis),
  driven the same way, for tests that must hold on both.
"""

from ..clock import FakeClock
from .hub import HubService, JupyterHubProcess, have_jupyterhub
from .processes import RedisServer, ServerProcess, have_redis_server

__all__ = [
    "FakeClock",
    "HubService",
    "JupyterHubProcess",
    "RedisServer",
    "ServerProcess",
    "have_jupyterhub",
    "have_redis_server",
]
