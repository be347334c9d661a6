"""The notebooks' exercise checks, one module per topic.

Each check takes the learner's function, runs it (against a live server on
loopback when that makes sense, stopping everything it started), and prints one
``PASS`` line or raises :class:`~wslab.CheckFailed` with one
``FAIL`` line and a hint. An exception raised by the learner's own function is
such a verdict too: which call raised what, a hint, and the learner's own lines.
Imported in a Jupyter kernel, this package makes IPython show a ``CheckFailed``
as that verdict alone, without the checks' traceback; any other exception keeps
its traceback. In a class on JupyterHub, each verdict also goes to the teachers
(:mod:`wslab.classroom.progress`); importing this package starts joining the
class in the background. Lessons import the checks by topic::

    from wslab.lab.checks.events import check_socket_url         # 00
    from wslab.lab.checks.events import check_event_log          # 01
    from wslab.lab.checks.close_codes import check_policy_violation  # 03
    from wslab.lab.checks.protocol import check_expected_error   # 04
    from wslab.lab.checks.broadcast import check_broadcast       # 05
    from wslab.lab.checks.reconnect import check_full_jitter     # 06
    from wslab.lab.checks.grace import check_grace               # 07
    from wslab.lab.checks.chat import check_bot                  # 08
    from wslab.lab.checks.wss import check_trust                 # 09
    from wslab.lab.checks.asyncio_kernel import check_run_blocking  # 10
    from wslab.lab.checks.performance import check_frame_bytes   # 11
    from wslab.lab.checks.scaling import check_claim_status      # 13
    from wslab.lab.checks.classroom import check_role_of         # 14
"""

from ...classroom.progress import kernel_reporter
from ...errors import CheckFailed
from ._common import show_verdicts_in_ipython

__all__ = ["CheckFailed"]

show_verdicts_in_ipython()
kernel_reporter().start()  # on a hub only: the class is joined before the first check
