"""The hub gate without a hub: its decisions, its cache and its cookie rules, with a
fake hub (a dict of tokens) and a fake clock. The real hub is in tests/system/test_hub.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from wslab.classroom import (
    CACHE_SECONDS,
    ClassroomError,
    HubGate,
    HubUser,
    Refusal,
    TokenCache,
    address,
    token_key,
)
from wslab.clock import FakeClock

ACCESS = "access:services!service=wslab"


def model(name: str, *, admin: bool = False, groups: tuple[str, ...] = (), **extra: Any) -> Any:
    return {
        "kind": "user",
        "name": name,
        "admin": admin,
        "groups": list(groups),
        "scopes": [ACCESS, f"read:users:name!user={name}"],
        **extra,
    }


class FakeHub:
    """Answers look-ups from a dict of tokens; counts them; can be down."""

    def __init__(self, users: Mapping[str, Any]) -> None:
        self.users = dict(users)
        self.requests = 0
        self.down = False

    async def lookup(self, token: str) -> Mapping[str, Any] | None:
        self.requests += 1
        await asyncio.sleep(0)  # a real request yields to other handshakes
        if self.down:
            raise ConnectionRefusedError("the hub is down")
        result: Mapping[str, Any] | None = self.users.get(token)
        return result


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub(
        {
            "t-ada": model("ada", groups=("class",)),
            "t-tom": model("tom", groups=("class", "teachers")),
            "t-ida": model("ida", admin=True),
            "t-out": {**model("out"), "scopes": ["read:users:name!user=out"]},
            "t-svc": {**model("grader"), "kind": "service"},
            "t-any": {**model("any"), "scopes": ["access:services"]},
        }
    )


def gate_for(hub: FakeHub, clock: FakeClock | None = None, **options: Any) -> HubGate:
    return HubGate("wslab", hub.lookup, teacher_groups=["teachers"], clock=clock, **options)


def identify(gate: HubGate, headers: Mapping[str, str]) -> HubUser | Refusal:
    return asyncio.run(gate.identify(headers))


def test_a_token_header_names_the_hub_user_and_role(hub: FakeHub) -> None:
    gate = gate_for(hub)
    ada = identify(gate, {"Authorization": "token t-ada"})
    assert ada == HubUser(
        name="ada",
        admin=False,
        groups=frozenset({"class"}),
        scopes=frozenset({ACCESS, "read:users:name!user=ada"}),
        role="student",
    )
    assert not ada.is_teacher
    assert identify(gate, {"authorization": "Bearer t-ida"}).role == "teacher"  # type: ignore[union-attr]
    assert identify(gate, {"Authorization": "token t-tom"}).role == "teacher"  # type: ignore[union-attr]
    assert isinstance(identify(gate, {"Authorization": "token t-any"}), HubUser)


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "no hub credential"),
        ({"Authorization": "Basic YWRhOnB3"}, "Authorization must be"),
        ({"Authorization": "token"}, "Authorization must be"),
        ({"Authorization": "token nobody-knows-me"}, "does not know this token"),
        ({"Authorization": "token t-out"}, "out may not use this chat"),
        ({"Authorization": "token t-svc"}, "only hub users"),
    ],
)
def test_refusals_are_403_with_one_line(
    hub: FakeHub, headers: Mapping[str, str], words: str
) -> None:
    refusal = identify(gate_for(hub), headers)
    assert isinstance(refusal, Refusal)
    assert refusal.status == 403
    assert words in refusal.reason and "\n" not in refusal.reason


def test_a_header_sent_twice_is_refused_not_raised(hub: FakeHub) -> None:
    from websockets.datastructures import Headers

    twice = Headers([("Authorization", "token t-ada"), ("Authorization", "token t-tom")])
    refusal = identify(gate_for(hub), twice)
    assert isinstance(refusal, Refusal) and refusal.status == 403
    assert hub.requests == 0
    assert identify(gate_for(hub), Headers([("Authorization", "token t-ada")])).name == "ada"  # type: ignore[union-attr]


def test_a_class_joining_at_once_makes_one_hub_request_per_token_per_period(
    hub: FakeHub,
) -> None:
    clock = FakeClock()
    gate = gate_for(hub, clock)
    tokens = ["t-ada", "t-tom", "t-ida", "nobody"]

    async def everyone_joins(times: int) -> list[HubUser | Refusal]:
        handshakes = [
            gate.identify({"Authorization": f"token {t}"}) for t in tokens for _ in range(times)
        ]
        return list(await asyncio.gather(*handshakes))

    answers = asyncio.run(everyone_joins(25))  # 100 handshakes at once, 4 tokens
    assert hub.requests == gate.hub_requests == 4
    assert sum(isinstance(a, HubUser) for a in answers) == 75
    clock.advance(CACHE_SECONDS - 0.1)
    asyncio.run(everyone_joins(3))  # reconnects within the period: from the cache
    assert hub.requests == 4
    clock.advance(0.1)
    asyncio.run(everyone_joins(3))  # the period is over: asked once more each
    assert hub.requests == 8


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = TokenCache(seconds=60, size=2)
    cache.put("a", {"name": "a"}, 0)
    cache.put("b", {"name": "b"}, 0)
    assert cache.get("a", 1) == (True, {"name": "a"})
    cache.put("c", {"name": "c"}, 2)
    assert len(cache) == 2
    assert cache.get("b", 3) == (False, None)
    assert cache.get("a", 3)[0] and cache.get("c", 3)[0]
    assert cache.get("a", 60) == (False, None)
    with pytest.raises(ValueError):
        TokenCache(size=0)


def test_a_hub_that_is_down_gives_503_and_nothing_is_cached(
    hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    gate = gate_for(hub, clock)
    assert isinstance(identify(gate, {"Authorization": "token t-ada"}), HubUser)
    hub.down = True
    with caplog.at_level(logging.WARNING, "wslab.classroom"):
        refusal = identify(gate, {"Authorization": "token t-tom"})
    assert refusal == Refusal(503, refusal.reason) and "hub cannot be reached" in refusal.reason
    assert "t-tom" not in caplog.text and token_key("t-tom")[:8] in caplog.text
    # a user already in the cache still gets in while the hub is down
    assert isinstance(identify(gate, {"Authorization": "token t-ada"}), HubUser)
    hub.down = False
    requests = hub.requests
    assert isinstance(identify(gate, {"Authorization": "token t-tom"}), HubUser)
    assert hub.requests == requests + 1


def test_overlapping_lookups_share_the_failure_too(hub: FakeHub) -> None:
    hub.down = True
    gate = gate_for(hub)

    async def three() -> list[HubUser | Refusal]:
        return list(
            await asyncio.gather(*(gate.identify({"Authorization": "token t-ada"}) for _ in "abc"))
        )

    answers = asyncio.run(three())
    assert [a.status for a in answers if isinstance(a, Refusal)] == [503, 503, 503]
    assert hub.requests == 1


def test_a_handshake_that_gives_up_does_not_cancel_the_others_lookup(hub: FakeHub) -> None:
    answer = asyncio.Event()
    slow = FakeHub(hub.users)

    async def lookup(token: str) -> Mapping[str, Any] | None:
        await answer.wait()
        return await slow.lookup(token)

    gate = HubGate("wslab", lookup)

    async def scenario() -> HubUser | Refusal:
        first = asyncio.ensure_future(gate.identify({"Authorization": "token t-ada"}))
        second = asyncio.ensure_future(gate.identify({"Authorization": "token t-ada"}))
        await asyncio.sleep(0)
        first.cancel()  # that client left during its handshake
        answer.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    user = asyncio.run(scenario())
    assert isinstance(user, HubUser) and user.name == "ada"
    assert slow.requests == 1 == gate.hub_requests


# ---------------------------------------------------------------------------- the cookie

SECRET = b"s" * 32
COOKIE = "service-wslab"


def signed(token: str, name: str = COOKIE, secret: bytes = SECRET) -> str:
    from tornado.web import create_signed_value

    return create_signed_value(secret, name, token).decode()


def cookie_gate(hub: FakeHub) -> HubGate:
    return gate_for(hub, cookie_name=COOKIE, cookie_secret=SECRET)


def page(cookie: str, origin: str | None = "http://hub.example:8000") -> dict[str, str]:
    headers = {"Host": "hub.example:8000", "Cookie": f"other=1; {COOKIE}={cookie}"}
    if origin is not None:
        headers["Origin"] = origin
    return headers


def test_the_login_cookie_from_the_chats_own_page_names_the_user(hub: FakeHub) -> None:
    user = identify(cookie_gate(hub), page(signed("t-ada")))
    assert isinstance(user, HubUser) and user.name == "ada"


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        (page(signed("t-ada"), origin="http://evil.example"), "own page"),
        (page(signed("t-ada"), origin=None), "own page"),
        (page(signed("t-ada", secret=b"x" * 32)), "not valid"),
        (page(signed("t-ada", name="another")), "not valid"),
        (page("garbage"), "not valid"),
    ],
)
def test_a_cookie_from_elsewhere_or_forged_is_refused(
    hub: FakeHub, headers: dict[str, str], words: str
) -> None:
    refusal = identify(cookie_gate(hub), headers)
    assert isinstance(refusal, Refusal) and refusal.status == 403 and words in refusal.reason
    assert hub.requests == 0


def test_cookies_are_ignored_without_a_cookie_secret(hub: FakeHub) -> None:
    refusal = identify(gate_for(hub), page(signed("t-ada")))
    assert isinstance(refusal, Refusal) and "no hub credential" in refusal.reason


# ---------------------------------------------------------------------------- address()


def test_address_outside_a_hub_says_in_one_line_what_is_missing() -> None:
    with pytest.raises(ClassroomError) as caught:
        address(environ={})
    message = str(caught.value)
    assert "\n" not in message
    assert "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN not set" in message


def test_address_prefers_the_deployments_url_then_the_public_url() -> None:
    env = {
        "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",  # never asked
        "JUPYTERHUB_API_TOKEN": "secret-token",
        "JUPYTERHUB_USER": "ada",
    }
    given = address(environ={**env, "WSLAB_CLASSROOM_URL": "wss://hub.example/services/wslab/chat"})
    assert given.url == "wss://hub.example/services/wslab/chat"
    assert given.headers == {"Authorization": "token secret-token"}
    assert given.user == "ada" and given.service == "wslab"
    assert "secret-token" not in repr(given)
    public = address(
        "chat", environ={**env, "JUPYTERHUB_PUBLIC_URL": "https://hub.example/jupyter/"}
    )
    assert public.url == "wss://hub.example/jupyter/services/chat/chat"


def test_a_missing_hub_program_is_named_with_its_install_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from wslab.testing.hub import missing_hub_programs

    monkeypatch.setenv("PATH", str(tmp_path))
    missing = missing_hub_programs()
    assert missing is not None and "\n" not in missing
    assert missing.startswith("configurable-http-proxy is not installed")
    assert "npm install -g configurable-http-proxy@5" in missing


def test_the_classroom_imports_neither_jupyterhub_nor_tornado() -> None:
    """A student's kernel needs only wslab: the hub's library is the service's extra."""
    import subprocess
    import sys

    program = (
        "import sys, wslab.classroom;"
        " print(sorted(m for m in ('jupyterhub', 'tornado', 'aiohttp') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- the page's login


def make_login(exchange_fails: bool = False) -> Any:
    from wslab.classroom.login import HubLogin

    seen: list[tuple[str, str]] = []

    async def exchange(code: str, verifier: str) -> str:
        seen.append((code, verifier))
        if exchange_fails:
            raise ConnectionRefusedError("the hub is down")
        return "t-ada"

    login = HubLogin(
        authorize_url="/hub/api/oauth2/authorize",
        client_id="service-wslab",
        redirect_uri="/services/wslab/oauth_callback",
        cookie_name=COOKIE,
        cookie_secret=SECRET,
        cookie_path="/services/wslab/",
        exchange=exchange,
        secure=True,
    )
    return login, seen


def test_the_pages_login_round_trip_sets_the_cookie_the_gate_reads(hub: FakeHub) -> None:
    from urllib.parse import parse_qs, urlsplit

    login, seen = make_login()
    location, state_cookie = login.begin("/services/wslab/?tab=2")
    sent = parse_qs(urlsplit(location).query)
    assert location.startswith("/hub/api/oauth2/authorize?")
    assert sent["client_id"] == ["service-wslab"] and sent["code_challenge_method"] == ["S256"]
    assert "Secure" in state_cookie and "Path=/services/wslab/" in state_cookie
    query = f"code=c0de&state={sent['state'][0]}"
    next_path, cookie = asyncio.run(login.finish(query, state_cookie.split(";")[0]))
    assert next_path == "/services/wslab/?tab=2"
    assert seen[0][0] == "c0de" and len(seen[0][1]) >= 43  # the PKCE verifier went along
    assert "t-ada" not in cookie and "HttpOnly" in cookie
    headers = {"Host": "hub.example:8000", "Origin": "http://hub.example:8000"}
    user = identify(cookie_gate(hub), {**headers, "Cookie": cookie.split(";")[0]})
    assert isinstance(user, HubUser) and user.name == "ada"


@pytest.mark.parametrize("case", ["no state cookie", "another state", "tampered cookie", "no code"])
def test_a_login_that_did_not_start_here_is_refused(case: str) -> None:
    from urllib.parse import parse_qs, urlsplit

    login, seen = make_login()
    location, state_cookie = login.begin("/services/wslab/")
    state = parse_qs(urlsplit(location).query)["state"][0]
    cookie: str | None = state_cookie.split(";")[0]
    query = f"code=c0de&state={state}"
    if case == "no state cookie":
        cookie = None
    elif case == "another state":
        query = "code=c0de&state=someone-elses"
    elif case == "tampered cookie":
        cookie = str(cookie)[:-2] + "00"
    else:
        query = f"state={state}"
    refusal = asyncio.run(login.finish(query, cookie))
    assert isinstance(refusal, Refusal) and refusal.status == 403
    assert seen == []  # the hub is not asked


def finish_from(login: Any, next_path: str) -> Any:
    from urllib.parse import parse_qs, urlsplit

    location, state_cookie = login.begin(next_path)
    state = parse_qs(urlsplit(location).query)["state"][0]
    return asyncio.run(login.finish(f"code=c&state={state}", state_cookie.split(";")[0]))


@pytest.mark.parametrize(
    "elsewhere",
    ["https://evil.example/", "//evil.example/", "/services/other/", "/services/wslab//x"],
)
def test_the_login_returns_only_below_the_prefix(elsewhere: str) -> None:
    login, _ = make_login()
    next_path, _ = finish_from(login, elsewhere)
    assert next_path == "/services/wslab/"


def test_a_hub_that_does_not_finish_the_login_gives_503() -> None:
    login, seen = make_login(exchange_fails=True)
    refusal = finish_from(login, "/services/wslab/")
    assert isinstance(refusal, Refusal) and refusal.status == 503 and len(seen) == 1
