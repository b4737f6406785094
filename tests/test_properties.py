"""Properties of every public write, on SQLite and PostgreSQL alike.

For any input, a write either raises a :class:`~agentstore.errors.StoreError` and writes
nothing (counts and stored rows unchanged), or stores the value so that it reads back equal:
strings exactly, integers exactly, floats equal, datetimes as the same instant as aware UTC
datetimes, JSON as the same value.

Hypothesis drives synchronous test bodies; each test owns an event loop and one store for all
its examples (fresh ids per example come from a counter).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from agentstore import (
    Approval,
    ApprovalStatus,
    ConversationEvent,
    EventType,
    FileSnapshot,
    MCPServer,
    Session,
    SessionStatus,
    SessionUpdate,
    Store,
)
from agentstore.errors import StoreError

T = TypeVar("T")
POSTGRES_URL = os.environ.get("AGENTSTORE_TEST_POSTGRES_URL", "")
NEEDS_POSTGRES = pytest.mark.skipif(not POSTGRES_URL, reason="AGENTSTORE_TEST_POSTGRES_URL unset")
BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=NEEDS_POSTGRES)]
EXAMPLES = {"sqlite": 200, "postgresql": 100}


# --- a store on a loop of our own ------------------------------------------------------------


async def _create_database() -> tuple[str, str, str]:
    """A new, empty PostgreSQL database: (admin DSN, its name, its URL)."""
    import asyncpg

    base = make_url(POSTGRES_URL)
    name = f"agentstore_p_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return admin_dsn, name, base.set(database=name).render_as_string(hide_password=False)


async def _drop_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclasses.dataclass
class Harness:
    """One store on one event loop, for all the examples of a test."""

    loop: asyncio.AbstractEventLoop
    store: Store
    backend: str
    counter: Iterator[int] = dataclasses.field(default_factory=itertools.count)
    accepted: int = 0
    refused: int = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def next(self) -> int:
        return next(self.counter)

    def saw_both_outcomes(self) -> None:
        """The examples were neither all refused nor all stored (the property is not vacuous)."""
        assert self.accepted > 0 and self.refused > 0, (self.accepted, self.refused)

    def settings(self) -> settings:
        return settings(
            max_examples=EXAMPLES[self.backend],
            deadline=None,
            database=None,  # nothing written beside the tests
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
            ],
        )


@contextmanager
def opened(backend: str, tmp_path: Path) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    try:
        dropping: tuple[str, str] | None = None
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'properties.db'}"
        else:
            admin_dsn, name, url = loop.run_until_complete(_create_database())
            dropping = (admin_dsn, name)
        try:
            store = loop.run_until_complete(Store.open(url))
            try:
                yield Harness(loop, store, backend)
            finally:
                loop.run_until_complete(store.close())
        finally:
            if dropping is not None:
                loop.run_until_complete(_drop_database(*dropping))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- strategies ------------------------------------------------------------------------------


def weighted(rare: st.SearchStrategy[Any], usual: st.SearchStrategy[Any], percent: float) -> Any:
    """``rare`` in about ``percent`` % of draws, else ``usual``.

    The band is taken from the middle of the range: Hypothesis draws the ends more often.
    """
    band = round(percent * 10)
    return st.integers(0, 999).flatmap(lambda n: rare if 500 <= n < 500 + band else usual)


GOOD_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
# Text no backend stores exactly: a NUL or a lone surrogate somewhere in it.
BAD_TEXT = st.tuples(
    st.text(GOOD_CHARS, max_size=5),
    st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]),
    st.text(st.characters(exclude_categories=()), max_size=5),
).map("".join)
LONG_TEXT = st.text(GOOD_CHARS, min_size=200, max_size=400)  # about 1,024 UTF-8 bytes
GOOD_TEXT = st.text(GOOD_CHARS)
# Each field is refused rarely, so that a row of thirty fields is still stored half the time.
TEXT: st.SearchStrategy[str] = weighted(BAD_TEXT, weighted(LONG_TEXT, GOOD_TEXT, 3), 1)
INT = weighted(st.integers(), st.integers(min_value=-(2**63), max_value=2**63 - 1), 3)
FLOAT = weighted(
    st.floats() | st.integers(), st.floats(allow_nan=False, allow_infinity=False) | INT, 5
)
BOOL = weighted(st.integers(0, 1), st.booleans(), 1)  # 0/1 are not bools: refused
OFFSETS = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-24) + timedelta(microseconds=1),
        max_value=timedelta(hours=24) - timedelta(microseconds=1),
    ),
)
DATETIME = st.datetimes(timezones=weighted(st.none(), st.timezones() | OFFSETS, 2))
JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
SESSION_STATUS = weighted(
    TEXT, st.sampled_from([*SessionStatus, *(s.value for s in SessionStatus)]), 5
)
EVENT_TYPE = weighted(TEXT, st.sampled_from([*EventType]), 5)
EVENT_APPROVAL_STATUS = weighted(TEXT, st.sampled_from(["", *ApprovalStatus]), 5)
APPROVAL_STATUS = weighted(TEXT, st.sampled_from([*ApprovalStatus]), 5)  # resolved: refused


def kind_of(annotation: str) -> tuple[str, bool]:
    """``Mapped[int | None]`` → ``("int", True)``."""
    inner = annotation.split("[", 1)[1].rsplit("]", 1)[0]
    nullable = inner.endswith(" | None")
    return inner.removesuffix(" | None"), nullable


STRATEGY_OF_KIND: dict[str, st.SearchStrategy[Any]] = {
    "str": TEXT,
    "int": INT,
    "float": FLOAT,
    "bool": BOOL,
    "datetime": DATETIME,
    "Any": JSON,
}


def kinds(cls: type[Any]) -> dict[str, tuple[str, bool]]:
    """Every field of a model (or of SessionUpdate) with its kind and whether it is nullable."""
    return {name: kind_of(annotation) for name, annotation in cls.__annotations__.items()}


def fields_of(
    cls: type[Any], overrides: dict[str, st.SearchStrategy[Any]], skip: tuple[str, ...] = ()
) -> st.SearchStrategy[dict[str, Any]]:
    """Arbitrary values for every field of ``cls`` (None too, where it is nullable)."""
    strategies = {}
    for name, (kind, nullable) in kinds(cls).items():
        if name in skip:
            continue
        strategy = overrides.get(name, STRATEGY_OF_KIND[kind])
        strategies[name] = st.none() | strategy if nullable else strategy
    return st.fixed_dictionaries(strategies)


# --- comparing what was given with what is stored ----------------------------------------------


def expected(kind: str, value: Any) -> Any:
    """What a stored value reads back as."""
    if value is None:
        return None
    if kind == "datetime":
        return value.astimezone(UTC)
    if kind == "float":
        return float(value)
    return value


def assert_reads_back(cls: type[Any], stored: Any, given: dict[str, Any]) -> None:
    for name, value in given.items():
        kind, _ = kinds(cls)[name]
        want = expected(kind, value)
        got = getattr(stored, name)
        assert got == want, (name, got, want)
        if want is None:
            assert got is None, name
        elif kind == "datetime":
            assert got.tzinfo is UTC and got.utcoffset() == timedelta(0), (name, got)
        elif kind in ("int", "float", "bool"):
            assert type(got) is type(want), (name, got, want)
        elif kind == "str":
            assert isinstance(got, str), (name, got)


def lookup_safe(text: str) -> bool:
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


# --- the properties --------------------------------------------------------------------------


@contextmanager
def local_time(zone: str | None) -> Iterator[None]:
    """The process's local time zone set to ``zone`` (hld's session times are local text)."""
    if zone is None:
        yield
        return
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


# A zone whose daylight saving moves the clock by 30 minutes: local text with two offsets.
SESSION_CASES = [
    pytest.param("sqlite", None, id="sqlite"),
    pytest.param("sqlite", "Australia/Lord_Howe", id="sqlite-local-Lord_Howe"),
    pytest.param("postgresql", None, id="postgresql", marks=NEEDS_POSTGRES),
]


@pytest.mark.parametrize(("backend", "zone"), SESSION_CASES)
def test_create_session(backend: str, zone: str | None, tmp_path: Path) -> None:
    with local_time(zone), opened(backend, tmp_path) as h:

        @h.settings()
        @given(
            fields=fields_of(Session, {"status": SESSION_STATUS}, skip=("id", "run_id")),
            id_text=TEXT,
            run_text=TEXT,
        )
        def check(fields: dict[str, Any], id_text: str, run_text: str) -> None:
            n = h.next()
            given_values = {"id": f"s{n}-{id_text}", "run_id": f"r{n}-{run_text}", **fields}
            before = h.run(h.store.get_session_count())
            try:
                h.run(h.store.create_session(Session(**given_values)))
            except StoreError:
                h.refused += 1
                assert h.run(h.store.get_session_count()) == before
                if lookup_safe(given_values["run_id"]):
                    assert h.run(h.store.get_session_by_run_id(given_values["run_id"])) is None
                return
            h.accepted += 1
            assert h.run(h.store.get_session_count()) == before + 1
            stored = h.run(h.store.get_session(given_values["id"]))
            assert_reads_back(Session, stored, given_values)
            assert h.run(h.store.get_session_by_run_id(given_values["run_id"])) == stored

        check()
        h.saw_both_outcomes()


@pytest.mark.parametrize(("backend", "zone"), SESSION_CASES)
def test_update_session(backend: str, zone: str | None, tmp_path: Path) -> None:
    with local_time(zone), opened(backend, tmp_path) as h:
        h.run(h.store.create_session(Session(id="target", run_id="target", query="q")))
        h.run(h.store.create_session(Session(id="bystander", run_id="bystander", query="q")))
        bystander = h.run(h.store.get_session("bystander"))
        optional = {}
        for name, (kind, nullable) in kinds(SessionUpdate).items():
            strategy = SESSION_STATUS if name == "status" else STRATEGY_OF_KIND[kind]
            # None is NULL for a nullable field and refused for the others.
            optional[name] = st.none() | strategy if nullable else weighted(st.none(), strategy, 3)

        @h.settings()
        @given(changes=st.fixed_dictionaries({}, optional=optional))
        def check(changes: dict[str, Any]) -> None:
            before = h.run(h.store.get_session("target"))
            try:
                h.run(h.store.update_session("target", SessionUpdate(**changes)))
            except StoreError:
                h.refused += 1
                assert h.run(h.store.get_session("target")) == before
                return
            h.accepted += 1
            after = h.run(h.store.get_session("target"))
            assert_reads_back(Session, after, changes)
            untouched = {
                f.name: getattr(before, f.name)
                for f in dataclasses.fields(Session)
                if f.name not in changes
            }
            assert {name: getattr(after, name) for name in untouched} == untouched

        check()
        h.saw_both_outcomes()
        assert h.run(h.store.get_session("bystander")) == bystander
        assert h.run(h.store.get_session_count()) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_conversation_events(backend: str, tmp_path: Path) -> None:
    with opened(backend, tmp_path) as h:
        h.run(h.store.create_session(Session(id="s-events", run_id="r", query="q")))
        event_fields = fields_of(
            ConversationEvent,
            {
                "session_id": weighted(st.just("ghost"), st.just("s-events"), 30),
                "event_type": EVENT_TYPE,
                "approval_status": EVENT_APPROVAL_STATUS,
            },
            skip=("id", "claude_session_id"),
        )

        @h.settings()
        @given(
            batch=st.lists(st.tuples(event_fields, st.integers(0, 1)), max_size=4),
            one_by_one=st.booleans(),
            claude_texts=st.tuples(TEXT, TEXT),
        )
        def check(
            batch: list[tuple[dict[str, Any], int]], one_by_one: bool, claude_texts: tuple[str, str]
        ) -> None:
            n = h.next()
            claude_ids = [f"c{n}.{i}-{text}" for i, text in enumerate(claude_texts)]
            given_events = [
                {**fields, "claude_session_id": claude_ids[which]} for fields, which in batch
            ]
            if one_by_one:
                given_events = given_events[:1]
            events = [ConversationEvent(**values) for values in given_events]
            before = h.run(h.store.get_event_count())
            try:
                if one_by_one and events:
                    returned = [h.run(h.store.add_conversation_event(events[0]))]
                else:
                    returned = h.run(h.store.add_conversation_events(events))
            except StoreError:
                h.refused += 1
                assert h.run(h.store.get_event_count()) == before
                return
            h.accepted += 1
            assert returned == events
            assert h.run(h.store.get_event_count()) == before + len(events)
            for claude_id in claude_ids:
                mine = [
                    (event, values)
                    for event, values in zip(events, given_events, strict=True)
                    if values["claude_session_id"] == claude_id
                ]
                if not mine and not lookup_safe(claude_id):
                    continue
                stored = h.run(h.store.get_conversation(claude_id))
                assert [e.sequence for e in stored] == list(range(1, len(mine) + 1))
                assert [e.id for e in stored] == [event.id for event, _ in mine]
                for got, (event, values) in zip(stored, mine, strict=True):
                    assert_reads_back(
                        ConversationEvent, got, {**values, "sequence": event.sequence}
                    )

        check()
        h.saw_both_outcomes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_create_approval(backend: str, tmp_path: Path) -> None:
    with opened(backend, tmp_path) as h:
        h.run(h.store.create_session(Session(id="s-approvals", run_id="r", query="q")))

        @h.settings()
        @given(
            fields=fields_of(
                Approval,
                {
                    "session_id": weighted(st.just("ghost"), st.just("s-approvals"), 30),
                    "status": APPROVAL_STATUS,
                },
                skip=("id",),
            ),
            id_text=TEXT,
        )
        def check(fields: dict[str, Any], id_text: str) -> None:
            given_values = {"id": f"a{h.next()}-{id_text}", **fields}
            before = h.run(h.store.get_approval_count())
            try:
                h.run(h.store.create_approval(Approval(**given_values)))
            except StoreError:
                h.refused += 1
                assert h.run(h.store.get_approval_count()) == before
                return
            h.accepted += 1
            assert h.run(h.store.get_approval_count()) == before + 1
            stored = h.run(h.store.get_approval(given_values["id"]))
            assert_reads_back(Approval, stored, given_values)

        check()
        h.saw_both_outcomes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_create_file_snapshot(backend: str, tmp_path: Path) -> None:
    with opened(backend, tmp_path) as h:
        h.run(h.store.create_session(Session(id="s-files", run_id="r", query="q")))

        @h.settings()
        @given(
            fields=fields_of(
                FileSnapshot,
                {"session_id": weighted(st.just("ghost"), st.just("s-files"), 30)},
                skip=("id",),
            )
        )
        def check(fields: dict[str, Any]) -> None:
            before = h.run(h.store.get_file_snapshots("s-files"))
            snapshot = FileSnapshot(**fields)
            try:
                h.run(h.store.create_file_snapshot(snapshot))
            except StoreError:
                h.refused += 1
                assert h.run(h.store.get_file_snapshots("s-files")) == before
                return
            h.accepted += 1
            after = h.run(h.store.get_file_snapshots("s-files"))
            assert len(after) == len(before) + 1
            [stored] = [s for s in after if s.id == snapshot.id]
            assert_reads_back(FileSnapshot, stored, fields)

        check()
        h.saw_both_outcomes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_raw_event(backend: str, tmp_path: Path) -> None:
    with opened(backend, tmp_path) as h:
        h.run(h.store.create_session(Session(id="s-raw", run_id="r", query="q")))

        @h.settings()
        @given(
            session_id=weighted(st.sampled_from(["ghost", ""]) | TEXT, st.just("s-raw"), 30),
            event_json=st.one_of(TEXT, JSON.map(repr)),
        )
        def check(session_id: str, event_json: str) -> None:
            before = h.run(h.store.raw_events.list("s-raw"))
            try:
                h.run(h.store.store_raw_event(session_id, event_json))
            except StoreError:
                h.refused += 1
                assert h.run(h.store.raw_events.list("s-raw")) == before
                return
            h.accepted += 1
            assert session_id == "s-raw"
            after = h.run(h.store.raw_events.list("s-raw"))
            assert after[:-1] == before
            assert after[-1].event_json == event_json
            assert after[-1].created_at.tzinfo is UTC

        check()
        h.saw_both_outcomes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_mcp_servers(backend: str, tmp_path: Path) -> None:
    with opened(backend, tmp_path) as h:
        h.run(h.store.create_session(Session(id="s-mcp", run_id="r", query="q")))
        server_fields = fields_of(MCPServer, {}, skip=("id",))

        @h.settings()
        @given(
            session_id=weighted(st.just("ghost"), st.just("s-mcp"), 30),
            servers=st.lists(server_fields, max_size=3),
        )
        def check(session_id: str, servers: list[dict[str, Any]]) -> None:
            before = h.run(h.store.get_mcp_servers("s-mcp"))
            given_servers = [MCPServer(**values) for values in servers]
            try:
                returned = h.run(h.store.store_mcp_servers(session_id, given_servers))
            except StoreError:
                h.refused += 1
                assert h.run(h.store.get_mcp_servers("s-mcp")) == before
                return
            h.accepted += 1
            after = h.run(h.store.get_mcp_servers(session_id))
            if session_id == "ghost":
                assert servers == [] and returned == [] and after == []
                return
            assert returned == given_servers
            assert after[: len(before)] == before
            added = after[len(before) :]
            assert [s.id for s in added] == [s.id for s in given_servers]
            for stored, values in zip(added, servers, strict=True):
                assert_reads_back(MCPServer, stored, {**values, "session_id": "s-mcp"})

        check()
        h.saw_both_outcomes()
