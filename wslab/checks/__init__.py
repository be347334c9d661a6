"""The notebooks' exercise checks, one module per topic.

Each check takes the learner's function, runs it (against a live server on
loopback when that makes sense, stopping everything it started), and prints one
``PASS`` line or raises :class:`~wslab.checks._common.CheckFailed` with one
``FAIL`` line and a hint. Lessons import them by topic::

    from wslab.checks.events import check_event_log        # 00, 01
    from wslab.checks.close_codes import check_policy_violation  # 02
    from wslab.checks.protocol import check_expected_error  # 03
    from wslab.checks.broadcast import check_broadcast      # 04
    from wslab.checks.reconnect import check_full_jitter    # 05
"""
