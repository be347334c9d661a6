"""The server's options: defined once, checked once, mapped from flat keywords, on the CLI."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from wslab import ChatServer
from wslab.__main__ import build_parser
from wslab.options import (
    FLAT_OPTIONS,
    ClassroomOptions,
    Limits,
    RedisOptions,
    ServerOptions,
    Timeouts,
    cli_options,
    resolve,
)


def test_every_flat_keyword_maps_onto_one_field() -> None:
    fields = {
        (g, f.name)
        for g in (Limits, Timeouts, RedisOptions, ClassroomOptions)
        for f in dataclasses.fields(g)
    }
    assert set(FLAT_OPTIONS.values()) == fields
    assert FLAT_OPTIONS["grace"] == (Timeouts, "grace")
    assert FLAT_OPTIONS["redis"] == (RedisOptions, "url")
    assert FLAT_OPTIONS["redis_heartbeat"] == (RedisOptions, "heartbeat")


def test_flat_keywords_and_option_objects_give_one_server_configuration() -> None:
    flat = ChatServer(grace=0, history=5, max_clients=7, redis_keep=9)
    assert flat.timeouts == Timeouts(grace=0)
    assert flat.limits == Limits(history=5, max_clients=7)
    assert flat.redis_options == RedisOptions(keep=9)
    grouped = ChatServer(limits=Limits(history=5, max_clients=7), timeouts=Timeouts(grace=0))
    assert (grouped.limits, grouped.timeouts) == (flat.limits, flat.timeouts)
    over = ChatServer(limits=Limits(history=5), history=8)  # a flat keyword wins
    assert over.limits.history == 8


def test_redis_is_a_url_or_an_object() -> None:
    url = "redis://127.0.0.1:6379/0"
    assert resolve({}, redis=url)[2] == RedisOptions(url=url)
    assert resolve({"redis_heartbeat": 1.0}, redis=RedisOptions(url=url))[2].heartbeat == 1.0


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_buffer": 0}, "max_buffer must be >= 1 (got 0)"),
        ({"join_timeout": 0}, "join_timeout must be > 0"),
        ({"max_per_address": -1}, "max_per_address must be >= 0"),
        ({"grace": float("inf")}, "grace must be >= 0"),
        ({"history": "5"}, "history must be a number"),
        ({"redis_heartbeat": 61}, "redis_heartbeat must be > 0 and <= 60"),
        ({"redis": "http://x"}, "is not a Redis URL"),
    ],
)
def test_a_bad_value_is_a_value_error_naming_the_option(
    options: dict[str, object], says: str
) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        ChatServer(**options)


def test_zero_means_no_cap_for_max_per_address_and_no_limit_for_rate() -> None:
    server = ChatServer(max_per_address=0, rate_limit=0, grace=0)
    assert server.admission.max_per_address == 0


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="'gracee'"):
        ChatServer(gracee=1)  # type: ignore[call-arg]  # and a mypy error


def test_server_options_types_every_flat_keyword_as_its_field() -> None:
    typed = typing.get_type_hints(ServerOptions)
    assert set(typed) == set(FLAT_OPTIONS) - {"redis"}  # redis is an argument of its own
    for keyword, (group, name) in FLAT_OPTIONS.items():
        if keyword != "redis":
            assert typed[keyword] == typing.get_type_hints(group)[name], keyword
    assert ServerOptions.__total__ is False


def test_the_cli_takes_its_defaults_from_the_option_classes() -> None:
    defaults = vars(build_parser().parse_args(["serve"]))
    for option in cli_options():
        given = defaults[option.keyword]
        given = tuple(given or ()) if option.kind is tuple else given  # appended to a list
        assert given == option.default, option.flag
    # The CLI offers every option but the two keepalive ones, which can be None, and the
    # de-duplication memory, which is the room's and the engines' (tests tune it).
    offered = {o.keyword for o in cli_options()}
    assert set(FLAT_OPTIONS) - offered == {"ping_interval", "ping_timeout", "dedupe_per_id"}
    # ChatServer's own defaults are the same objects' defaults.
    server = ChatServer()
    assert (server.limits, server.timeouts, server.redis_options) == (
        Limits(),
        Timeouts(),
        RedisOptions(),
    )
