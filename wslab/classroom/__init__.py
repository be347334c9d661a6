"""The classroom: one chat for a whole class on JupyterHub, with the hub's identities.

- :func:`join`: in a student's notebook on the hub, the class chat's widget,
  connected as the hub user (no arguments needed); :func:`client` the same as a
  :class:`~wslab.client.ChatClient` for scripts; :func:`address` where the chat is
  and the headers that say who the student is;
- :func:`teacher` and :func:`board`: a teacher's moderation (mute, unmute, kick,
  clear, announce) and the class's verdicts, from Python (:class:`Teacher`) or as a
  notebook widget (:class:`~wslab.classroom.widget.Board`); the checks' verdicts reach
  it through :mod:`wslab.classroom.progress`;
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
which brings ``jupyterhub``); :func:`join` needs nothing beyond wslab's own dependencies
(and the widget's, ``anywidget``).
"""

from typing import TYPE_CHECKING, Any

from ..errors import ClassroomError
from .auth import CACHE_SECONDS, CACHE_SIZE, HubGate, HubUser, Refusal, TokenCache, token_key
from .join import DEFAULT_SERVICE, ClassroomAddress, address, client, join
from .login import HubLogin
from .teacher import ProgressRow, Teacher, progress_table, teacher

if TYPE_CHECKING:
    from .widget import Board, board


def __getattr__(name: str) -> Any:
    # The board pulls in anywidget and IPython: loaded only when asked for.
    if name in ("Board", "board"):
        from . import widget

        return getattr(widget, name)
    raise AttributeError(f"module 'wslab.classroom' has no attribute {name!r}")


__all__ = [
    "CACHE_SECONDS",
    "CACHE_SIZE",
    "DEFAULT_SERVICE",
    "Board",
    "ClassroomAddress",
    "ClassroomError",
    "HubGate",
    "HubLogin",
    "HubUser",
    "ProgressRow",
    "Refusal",
    "Teacher",
    "TokenCache",
    "address",
    "board",
    "client",
    "join",
    "progress_table",
    "teacher",
    "token_key",
]
