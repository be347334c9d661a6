"""The classroom benchmark's arithmetic: the hub's request count, the table, the targets."""

from __future__ import annotations

from benchmarks.classroom import WHO_AM_I, classroom_checks, classroom_table, count_requests

COUNT = "jupyterhub_request_duration_seconds_count"
METRICS = "\n".join(
    [
        "# TYPE jupyterhub_request_duration_seconds histogram",
        f'jupyterhub_request_duration_seconds_bucket{{code="200",handler="{WHO_AM_I}",le="1"}} 3.0',
        f'{COUNT}{{code="200",handler="{WHO_AM_I}",method="GET"}} 298.0',
        f'{COUNT}{{code="403",handler="{WHO_AM_I}",method="GET"}} 2.0',
        f'{COUNT}{{code="200",handler="jupyterhub.apihandlers.users.UserAPIHandler"}} 41.0',
    ]
)

POINT = {
    "plain": {"join_s": 1.0, "deliveries_per_s": 20_000.0, "fanout_p50_ms": 5.0},
    "hub": {
        "cold_join_s": 2.5,
        "warm_join_s": 1.1,
        "hub_requests_cold": 300,
        "hub_requests_warm": 0,
        "deliveries_per_s": 19_000.0,
        "fanout_p50_ms": 6.0,
    },
}


def test_only_who_am_i_requests_are_counted_whatever_their_status() -> None:
    assert count_requests(METRICS) == 300


def test_the_table_shows_the_ratios_and_the_requests() -> None:
    text = classroom_table({300: POINT})
    assert "2.50x" in text and "1.10x" in text and "300 / 0" in text


def test_the_targets_are_a_3x_join_and_one_request_per_user() -> None:
    passing = classroom_checks({"points": {"300": POINT}})
    assert [check.passed for check in passing] == [True, True]
    slow = {**POINT, "hub": {**POINT["hub"], "cold_join_s": 3.5, "hub_requests_warm": 300}}
    failing = classroom_checks({"points": {"300": slow}})
    assert [check.passed for check in failing] == [False, False]


def test_the_hub_alone_is_shown_beside_the_join_and_named_in_the_verdict() -> None:
    alone = {**POINT, "hub": {**POINT["hub"], "hub_alone_s": 1.8}}
    assert "1.800" in classroom_table({300: alone}) and "1.80x" in classroom_table({300: alone})
    join = classroom_checks({"points": {"300": alone}})[0]
    assert join.note == "the hub alone: 1.80x"


def test_results_recorded_without_the_hub_alone_still_make_a_table() -> None:
    row = classroom_table({300: POINT}).splitlines()[-1]
    assert [cell.strip() for cell in row.split("|")][7:9] == ["-", "-"]
    assert classroom_checks({"points": {"300": POINT}})[0].note == ""
