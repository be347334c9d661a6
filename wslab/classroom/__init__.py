"""The classroom: one chat for a whole class on JupyterHub, with the hub's identities.

- :func:`join`: from a student's kernel on the hub, where the class chat is and the
  headers that say who the student is (no arguments needed);
- :class:`HubGate`: on the service's side, who a handshake is, from its headers,
  before a socket exists (a :class:`HubUser` with a teacher's or a student's role,
  or a :class:`Refusal`), with the hub's answers cached for a short time;
- :class:`HubLogin`: the chat page's login through the hub (OAuth with PKCE), ending
  in the signed cookie :class:`HubGate` reads.

``python -m wslab serve --hub`` puts them together: :mod:`wslab.classroom.service`
serves the page, its login and the socket below the hub's service prefix, and
:class:`wslab.moderation.ClassRoom` holds the classroom's rules (hub names, teachers,
``mute``, ``kick``, ``clear``, ``announce``, ``progress``).

The service's side needs the ``classroom`` extra (``pip install "wslab[classroom]"``,
which brings ``jupyterhub``); :func:`join` needs nothing beyond the standard library.
"""

from ..errors import ClassroomError
from .auth import CACHE_SECONDS, CACHE_SIZE, HubGate, HubUser, Refusal, TokenCache, token_key
from .join import DEFAULT_SERVICE, ClassroomAddress, join
from .login import HubLogin

__all__ = [
    "CACHE_SECONDS",
    "CACHE_SIZE",
    "DEFAULT_SERVICE",
    "ClassroomAddress",
    "ClassroomError",
    "HubGate",
    "HubLogin",
    "HubUser",
    "Refusal",
    "TokenCache",
    "join",
    "token_key",
]
