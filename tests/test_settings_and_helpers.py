"""User settings, the seed's two helpers (Session.from_config, mcp_servers_from_config),
MCP server storage and secret-free reprs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstore import (
    InvalidValueError,
    MCPServer,
    MCPServerConfig,
    NotFoundError,
    Session,
    SessionConfig,
    SessionStatus,
    SessionUpdate,
    Store,
    UserSettings,
    mcp_servers_from_config,
)


def assert_utc(value: datetime) -> None:
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(0)


# --- user settings ---------------------------------------------------------------------------


async def test_fresh_store_has_the_migration_created_settings_row(store: Store) -> None:
    settings = await store.get_user_settings()
    assert settings.advanced_providers is False
    assert settings.opt_in_telemetry is None
    assert_utc(settings.created_at)
    assert_utc(settings.updated_at)
    now = datetime.now(UTC)
    # Written by the migration a moment ago (CURRENT_TIMESTAMP, to the second on SQLite).
    assert now - timedelta(minutes=5) <= settings.created_at <= now
    assert settings.created_at <= settings.updated_at


@pytest.mark.parametrize("advanced", [True, False])
@pytest.mark.parametrize("telemetry", [True, False, None])
async def test_update_user_settings_round_trip(
    store: Store, advanced: bool, telemetry: bool | None
) -> None:
    original = await store.get_user_settings()
    before = datetime.now(UTC)
    returned = await store.update_user_settings(
        UserSettings(advanced_providers=advanced, opt_in_telemetry=telemetry)
    )
    after = datetime.now(UTC)
    stored = await store.get_user_settings()

    for settings in (returned, stored):
        assert settings.advanced_providers is advanced
        assert settings.opt_in_telemetry is telemetry
        assert settings.created_at == original.created_at
        assert before <= settings.updated_at <= after
        assert_utc(settings.updated_at)


async def test_opt_in_telemetry_true_false_none_are_distinct(store: Store) -> None:
    seen: list[bool | None] = []
    for value in (True, False, None, False, True, None):
        await store.update_user_settings(
            UserSettings(advanced_providers=True, opt_in_telemetry=value)
        )
        seen.append((await store.get_user_settings()).opt_in_telemetry)
    assert seen == [True, False, None, False, True, None]
    assert all(v is None or isinstance(v, bool) for v in seen)


async def test_update_user_settings_bumps_updated_at_and_keeps_created_at(store: Store) -> None:
    original = await store.get_user_settings()
    first = await store.update_user_settings(
        UserSettings(
            advanced_providers=True,
            # Both timestamps of the argument are ignored, as in the seed.
            created_at=datetime(2000, 1, 1, tzinfo=UTC),
            updated_at=datetime(2000, 1, 1, tzinfo=UTC),
        )
    )
    mark = datetime.now(UTC)
    second = await store.update_user_settings(UserSettings(advanced_providers=False))
    stored = await store.get_user_settings()

    assert first.created_at == original.created_at
    assert stored.created_at == original.created_at
    assert first.updated_at >= original.updated_at
    assert second.updated_at >= mark > first.updated_at
    assert stored.updated_at == second.updated_at
    assert stored.advanced_providers is False


@pytest.mark.parametrize(
    "fields",
    [
        {"advanced_providers": 1},
        {"advanced_providers": "true"},
        {"advanced_providers": None},
        {"advanced_providers": True, "opt_in_telemetry": 0},
        {"advanced_providers": True, "opt_in_telemetry": "yes"},
    ],
    ids=["adv-int", "adv-str", "adv-none", "tel-int", "tel-str"],
)
async def test_update_user_settings_refuses_wrong_types(
    store: Store, fields: dict[str, Any]
) -> None:
    await store.update_user_settings(UserSettings(advanced_providers=True, opt_in_telemetry=True))
    before = await store.get_user_settings()
    with pytest.raises(InvalidValueError):
        await store.update_user_settings(UserSettings(**fields))
    after = await store.get_user_settings()
    assert after.advanced_providers is True
    assert after.opt_in_telemetry is True
    assert after.updated_at == before.updated_at


# --- Session.from_config ---------------------------------------------------------------------


def test_from_config_maps_the_launch_config() -> None:
    before = datetime.now(UTC)
    session = Session.from_config(
        "sess-1",
        "run-1",
        SessionConfig(
            query="fix it",
            model="opus",
            working_dir="/src",
            max_turns=12,
            system_prompt="sys",
            append_system_prompt="append",
            custom_instructions="custom",
            permission_prompt_tool="mcp__approve",
            allowed_tools=["Read", "Bash(git log <x> && y)"],
            disallowed_tools=[],
            additional_directories=None,
            mcp_servers={"fs": MCPServerConfig(command="npx")},
        ),
    )
    after = datetime.now(UTC)

    assert session.id == "sess-1"
    assert session.run_id == "run-1"
    assert session.query == "fix it"
    assert session.model == "opus"
    assert session.working_dir == "/src"
    assert session.max_turns == 12
    assert session.system_prompt == "sys"
    assert session.append_system_prompt == "append"
    assert session.custom_instructions == "custom"
    assert session.permission_prompt_tool == "mcp__approve"
    assert session.allowed_tools == '["Read","Bash(git log \\u003cx\\u003e \\u0026\\u0026 y)"]'
    assert session.disallowed_tools == "[]"
    assert session.additional_directories == "null"
    assert session.status == "starting"
    assert session.title == ""
    # Everything else is left at its zero value.
    for name in (
        "claude_session_id",
        "parent_session_id",
        "summary",
        "model_id",
        "result_content",
        "error_message",
        "proxy_base_url",
        "proxy_model_override",
        "proxy_api_key",
    ):
        assert getattr(session, name) == "", name
    for name in (
        "editor_state",
        "completed_at",
        "cost_usd",
        "dangerously_skip_permissions_timeout_ms",
        "dangerously_skip_permissions_expires_at",
        "input_tokens",
        "num_turns",
    ):
        assert getattr(session, name) is None, name
    for name in ("auto_accept_edits", "dangerously_skip_permissions", "archived", "proxy_enabled"):
        assert getattr(session, name) is False, name
    for stamp in (session.created_at, session.last_activity_at):
        assert_utc(stamp)
        assert before <= stamp <= after


def test_from_config_json_matches_go() -> None:
    def encode(tools: list[str] | None) -> str:
        return Session.from_config("i", "r", SessionConfig(allowed_tools=tools)).allowed_tools

    assert encode(None) == "null"
    assert encode([]) == "[]"
    assert encode(["a", "b"]) == '["a","b"]'
    assert encode(["<script>&"]) == '["\\u003cscript\\u003e\\u0026"]'
    # Go keeps non-ASCII as UTF-8 and escapes quotes, backslashes and control characters.
    assert encode(["café ☕"]) == '["café ☕"]'
    assert encode(['say "hi"\\n', "tab\there\nline"]) == '["say \\"hi\\"\\\\n","tab\\there\\nline"]'
    # The encoded text is JSON that decodes to the same list.
    tools = ["<a>", "&", "x\u2028y", "é", "\x01"]
    assert json.loads(encode(tools)) == tools


def test_from_config_escapes_line_separators_like_go() -> None:
    # Go's encoding/json escapes U+2028 and U+2029 unconditionally (they break JavaScript
    # string literals), so hld stores them as \u2028 and \u2029.
    session = Session.from_config("i", "r", SessionConfig(allowed_tools=["a\u2028b\u2029c"]))
    assert session.allowed_tools == '["a\\u2028b\\u2029c"]'
    servers = mcp_servers_from_config(
        "s", {"x": MCPServerConfig(command="c", env={"K": "line\u2028sep"})}
    )
    assert servers[0].env_json == '{"K":"line\\u2028sep"}'


def test_from_config_minimal() -> None:
    session = Session.from_config("i", "r", SessionConfig())
    assert session.query == ""
    assert session.max_turns == 0
    assert session.allowed_tools == "null"
    assert session.disallowed_tools == "null"
    assert session.additional_directories == "null"
    assert session.status == SessionStatus.STARTING


async def test_from_config_session_round_trips(store: Store) -> None:
    session = Session.from_config(
        "cfg",
        "run-cfg",
        SessionConfig(query="q", allowed_tools=["<x>"], additional_directories=["/a", "/b"]),
    )
    await store.create_session(session)
    got = await store.get_session("cfg")
    assert got.allowed_tools == '["\\u003cx\\u003e"]'
    assert got.additional_directories == '["/a","/b"]'
    assert got.disallowed_tools == "null"
    assert got.status == "starting"
    assert got.created_at == session.created_at


# --- mcp_servers_from_config -----------------------------------------------------------------


def _servers() -> dict[str, MCPServerConfig]:
    return {
        "zeta": MCPServerConfig(
            command="node", args=["server.js", "--port=<1>"], env={"B": "2", "A": "x&y"}
        ),
        "Alpha": MCPServerConfig(
            type="http",
            url="https://mcp.example/api?a=1&b=<2>",
            headers={"X-Token": "t&k", "Authorization": "Bearer <k>"},
        ),
        "_under": MCPServerConfig(command="python", args=[], env={}),
        "beta": MCPServerConfig(type="http", url="http://localhost:8080/mcp"),
        "Zulu": MCPServerConfig(type="sse", command="sse-cmd", url="http://ignored"),
        "émoji": MCPServerConfig(command="bare"),
    }


def test_mcp_servers_from_config_order_and_encoding() -> None:
    servers = mcp_servers_from_config("sess", _servers())
    # sort.Strings: byte-wise, so upper case before '_' before lower case before non-ASCII.
    assert [s.name for s in servers] == ["Alpha", "Zulu", "_under", "beta", "zeta", "émoji"]
    by_name = {s.name: s for s in servers}
    for s in servers:
        assert s.session_id == "sess"
        assert s.id is None

    alpha = by_name["Alpha"]
    assert alpha.command == "http"
    assert alpha.args_json == '["https://mcp.example/api?a=1&b=<2>"]'  # raw, as hld formats it
    assert alpha.env_json == ('{"Authorization":"Bearer \\u003ck\\u003e","X-Token":"t\\u0026k"}')

    beta = by_name["beta"]
    assert (beta.command, beta.args_json, beta.env_json) == (
        "http",
        '["http://localhost:8080/mcp"]',
        "null",
    )

    zeta = by_name["zeta"]
    assert zeta.command == "node"
    assert zeta.args_json == '["server.js","--port=\\u003c1\\u003e"]'
    assert zeta.env_json == '{"A":"x\\u0026y","B":"2"}'

    under = by_name["_under"]
    assert (under.command, under.args_json, under.env_json) == ("python", "[]", "{}")

    # Only type == "http" exactly is http; anything else is stored like stdio.
    zulu = by_name["Zulu"]
    assert (zulu.command, zulu.args_json, zulu.env_json) == ("sse-cmd", "null", "null")

    bare = by_name["émoji"]
    assert (bare.command, bare.args_json, bare.env_json) == ("bare", "null", "null")


def test_mcp_servers_from_config_accepts_a_session_config() -> None:
    from_mapping = mcp_servers_from_config("s", _servers())
    from_config = mcp_servers_from_config("s", SessionConfig(mcp_servers=_servers()))
    assert [(m.name, m.command, m.args_json, m.env_json) for m in from_config] == [
        (m.name, m.command, m.args_json, m.env_json) for m in from_mapping
    ]
    assert mcp_servers_from_config("s", SessionConfig()) == []
    assert mcp_servers_from_config("s", {}) == []


async def test_store_and_get_mcp_servers_round_trip(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", query="q"))
    await store.create_session(Session(id="s2", run_id="r2", query="q"))
    servers = mcp_servers_from_config("s1", _servers())
    expected = [(m.name, m.command, m.args_json, m.env_json) for m in servers]

    stored = await store.store_mcp_servers("s1", servers)
    assert [s.id for s in stored] == sorted(s.id for s in stored if s.id is not None)
    await store.store_mcp_servers("s2", [MCPServer(name="other", command="x")])

    got = await store.get_mcp_servers("s1")
    assert [(m.name, m.command, m.args_json, m.env_json) for m in got] == expected
    assert all(m.session_id == "s1" for m in got)
    assert [m.id for m in got] == [m.id for m in stored]

    # Storing again appends, in insertion order (not by name).
    await store.store_mcp_servers(
        "s1", [MCPServer(name="zz-late", command="a"), MCPServer(name="aa-late", command="b")]
    )
    names = [m.name for m in await store.get_mcp_servers("s1")]
    assert names == [e[0] for e in expected] + ["zz-late", "aa-late"]
    assert [m.name for m in await store.get_mcp_servers("s2")] == ["other"]
    assert await store.get_mcp_servers("nobody") == []


async def test_store_mcp_servers_for_unknown_session(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.store_mcp_servers("missing", [MCPServer(name="a", command="b")])
    assert await store.get_mcp_servers("missing") == []


# --- secrets stay out of reprs ---------------------------------------------------------------


async def test_repr_never_shows_the_proxy_api_key(store: Store) -> None:
    secret = "sk-proxy-VERY-SECRET-42"
    session = Session(
        id="s",
        run_id="r",
        query="q",
        proxy_enabled=True,
        proxy_api_key=secret,
        proxy_base_url="https://proxy.example",
    )
    assert secret not in repr(session)
    assert secret not in str(session)
    assert "https://proxy.example" in repr(session)  # the repr is still informative

    await store.create_session(session)
    got = await store.get_session("s")
    assert got.proxy_api_key == secret
    assert secret not in repr(got)
    assert secret not in repr(await store.list_sessions())
    assert secret not in repr(SessionUpdate(proxy_api_key=secret))
