"""wslab's benchmark suite: ``python -m benchmarks [all|fanout|history|reconnect|memory]``.

Modules, in the order a run uses them::

    config     the sizes of a full run and of --quick
    targets    the servers under test, started pinned to a core
    servers    the comparison servers: websockets broadcast() and python-socketio
    loadgen    the load generator process (picows on uvloop)
    noise      waiting for a quiet machine, repeating disturbed runs
    fanout     delivered messages/s, fan-out latency, bytes per delivery
    history    bytes and rate per message as history grows
    reconnect  drop-to-connected time; the thundering-herd simulation
    memory     RSS per idle connection; start-to-listening; notebooks' wall time
    report     machine description, tables, PASS/MISS checks, results files

See benchmarks/README.md for the method and the figures of a full run.
"""
