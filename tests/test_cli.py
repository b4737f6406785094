"""The command line (SPEC §8), through the installed console script.

Every test runs ``agentstore`` (the script beside this interpreter) as a real subprocess, in a
folder with no checkout (``cwd`` is ``tmp_path``), with ``HOME`` there too so that the default
``~/.agentstore/agent.db`` lands under ``tmp_path``, and without ``AGENTSTORE_DATABASE_URL``
unless a test sets it. Data is written the way a daemon writes it: with the Python API, on the
same database the command then reads. Tests that take ``target`` run on an SQLite file and,
when ``AGENTSTORE_TEST_POSTGRES_URL`` is set, again on a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import termios
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import click
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

import agentstore
from agentstore import (
    Approval,
    ApprovalStatus,
    ConversationEvent,
    EventType,
    Session,
    SessionStatus,
    Store,
    migrations,
)
from agentstore.cli import cli as cli_group

AGENTSTORE = Path(sys.executable).parent / "agentstore"
ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)
SECRET = "secretpw-cli-7f3a"
UNREACHABLE = f"postgresql+asyncpg://agent:{SECRET}@127.0.0.1:1/agentstore"
UNREACHABLE_QUERY = f"postgresql+asyncpg://agent@127.0.0.1:1/agentstore?password={SECRET}"
PROXY_KEY = "sk-or-v1-do-not-print-0123456789"


# --- running the command -----------------------------------------------------------------------


@dataclass
class Result:
    """What one run of ``agentstore`` did."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # shown by failing asserts
        return (
            f"agentstore {' '.join(self.args)} -> {self.code}\n"
            f"--- stdout ---\n{self.out}--- stderr ---\n{self.err}"
        )

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def ok(self) -> Result:
        assert self.code == 0, str(self)
        assert "Traceback" not in self.err, str(self)
        return self

    def error_line(self, *secrets: str) -> str:
        """The one ``agentstore: …`` line of a failed run (exit 1, no traceback, no secret)."""
        assert self.code == 1, str(self)
        assert "Traceback" not in self.err, str(self)
        lines = self.err.splitlines()
        assert len(lines) == 1, str(self)
        assert lines[0].startswith("agentstore: "), str(self)
        for secret in secrets:
            assert secret not in self.out + self.err, str(self)
        return lines[0]

    def usage_error(self) -> Result:
        assert self.code == 2, str(self)
        assert "Traceback" not in self.err, str(self)
        return self


class Cli:
    """``agentstore`` in one folder, with a clean environment."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            key: value for key, value in os.environ.items() if key != "AGENTSTORE_DATABASE_URL"
        }
        self.env["HOME"] = str(home)
        self.env.pop("COLUMNS", None)

    async def __call__(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> Result:
        proc = await asyncio.create_subprocess_exec(
            str(AGENTSTORE),
            *args,
            cwd=cwd or self.home,
            env={**self.env, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode is not None
        return Result(args, proc.returncode, out.decode(), err.decode())

    async def shell(self, command: str) -> Result:
        """``command`` through bash (for pipes), ``agentstore`` being this script."""
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command.replace("agentstore ", f"'{AGENTSTORE}' "),
            cwd=self.home,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode is not None
        return Result((command,), proc.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def target(db_url: str, tmp_path: Path) -> str:
    """``--db`` for a test: a plain SQLite file path, or a fresh PostgreSQL database's URL."""
    if db_url.startswith("sqlite"):
        return str(tmp_path / "data" / "agent.db")
    return db_url


def is_sqlite(target: str) -> bool:
    return "://" not in target


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tsv(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrations.alembic_config())


# --- data, written as a daemon writes it ---------------------------------------------------------


@dataclass
class Chain:
    parent: str = "sess-parent"
    child: str = "sess-child"
    other: str = "sess-other"
    archived: str = "sess-archived"
    parent_claude: str = "claude-parent"
    child_claude: str = "claude-child"


async def record_chain(target: str) -> Chain:
    """A resumed session (parent, child), another running one and an archived one."""
    c = Chain()
    async with Store.open(target) as store:
        await store.create_session(
            Session(
                id=c.parent,
                run_id="run-parent",
                query="fix the flaky test",
                title="Fix flaky test",
                claude_session_id=c.parent_claude,
                status=SessionStatus.COMPLETED,
                cost_usd=0.0421,
                proxy_enabled=True,
                proxy_api_key=PROXY_KEY,
                created_at=T0,
                last_activity_at=T0 + timedelta(minutes=5),
            )
        )
        await store.create_session(
            Session(
                id=c.child,
                run_id="run-child",
                query="go ahead",
                title="Fix flaky test (resumed)",
                parent_session_id=c.parent,
                claude_session_id=c.child_claude,
                status=SessionStatus.RUNNING,
                created_at=T0 + timedelta(minutes=10),
                last_activity_at=T0 + timedelta(minutes=20),
            )
        )
        await store.create_session(
            Session(
                id=c.other,
                run_id="run-other",
                query="bump react",
                status=SessionStatus.FAILED,
                error_message="boom",
                created_at=T0 + timedelta(minutes=1),
                last_activity_at=T0 + timedelta(minutes=15),
            )
        )
        await store.create_session(
            Session(
                id=c.archived,
                run_id="run-archived",
                query="old work",
                status=SessionStatus.COMPLETED,
                archived=True,
                created_at=T0 - timedelta(days=3),
                last_activity_at=T0 - timedelta(days=2),
            )
        )

        def event(session: str, claude: str, kind: EventType, **fields: str) -> ConversationEvent:
            return ConversationEvent(
                session_id=session,
                claude_session_id=claude,
                event_type=kind,
                **fields,  # type: ignore[arg-type]
            )

        await store.add_conversation_events(
            [
                event(c.parent, c.parent_claude, EventType.MESSAGE, role="user", content="p1"),
                event(
                    c.parent, c.parent_claude, EventType.THINKING, role="assistant", content="p2"
                ),
                event(c.parent, c.parent_claude, EventType.MESSAGE, role="assistant", content="p3"),
            ]
        )
        await store.add_conversation_events(
            [
                event(c.child, c.child_claude, EventType.MESSAGE, role="user", content="c1"),
                event(
                    c.child,
                    c.child_claude,
                    EventType.TOOL_CALL,
                    tool_id="toolu_1",
                    tool_name="Bash",
                    tool_input_json='{"command":"pytest"}',
                ),
                event(
                    c.child,
                    c.child_claude,
                    EventType.TOOL_RESULT,
                    role="user",
                    tool_result_for_id="toolu_1",
                    tool_result_content="c3 passed",
                ),
            ]
        )
    return c


async def record_approvals(target: str) -> tuple[str, str]:
    """Two sessions with one pending approval each; returns the approvals' ids."""
    async with Store.open(target) as store:
        for n in (1, 2):
            await store.create_session(
                Session(id=f"s{n}", run_id=f"r{n}", query="q", created_at=T0, last_activity_at=T0)
            )
        await store.create_approval(
            Approval(
                id="appr-1",
                run_id="r1",
                session_id="s1",
                tool_name="Bash",
                tool_input={"command": "rm -rf build"},
                created_at=T0,
            )
        )
        await store.create_approval(
            Approval(
                id="appr-2",
                run_id="r2",
                session_id="s2",
                tool_name="Edit",
                tool_input={"file_path": "a.py", "new": "ü"},
                created_at=T0 + timedelta(seconds=1),
            )
        )
    return "appr-1", "appr-2"


# --- --version and --help ----------------------------------------------------------------------


async def test_version(cli: Cli) -> None:
    done = (await cli("--version")).ok()
    assert done.out.strip() == f"agentstore {agentstore.__version__}"
    assert agentstore.__version__ == installed_version("agentstore")


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


async def test_help_of_every_group_and_command_is_plain_text(cli: Cli) -> None:
    paths = list(command_paths(cli_group))
    expected = {
        ("demo",),
        ("adopt",),
        ("stats",),
        ("sessions", "list"),
        ("sessions", "show"),
        ("sessions", "tail"),
        ("approvals", "list"),
        ("approvals", "approve"),
        ("approvals", "deny"),
        ("db", "upgrade"),
        ("db", "downgrade"),
        ("db", "current"),
        ("db", "history"),
        ("db", "check"),
    }
    assert expected <= set(paths)
    results = await asyncio.gather(*(cli(*path, "--help") for path in paths))
    for path, done in zip(paths, results, strict=True):
        done.ok()
        assert done.out.startswith(f"Usage: {' '.join(('agentstore', *path))}"), str(done)
        assert "``" not in done.out, str(done)
        assert ":class:" not in done.out and ":func:" not in done.out, str(done)
        assert done.err == "", str(done)
    short = (await cli("-h")).ok()
    assert short.out == results[0].out


# --- demo ----------------------------------------------------------------------------------------


async def test_demo_records_a_resumed_session_into_the_current_folder(
    cli: Cli, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    done = (await cli("demo", env={"AGENTSTORE_DATABASE_URL": str(elsewhere)})).ok()
    db = tmp_path / "agentstore-demo.db"
    assert mode(db) == 0o600
    assert not elsewhere.exists()  # the demo never writes to $AGENTSTORE_DATABASE_URL
    out = done.out
    assert out.splitlines()[0] == f"Recorded a resumed agent session into {db}"
    assert "conversation of the resumed session (ancestor first)" in out
    assert "approval=approved" in out and "linear" in out and "tests/test_sync.py" in out
    assert "<redacted>" not in out  # header values are not printed, only their names
    async with Store.open(db) as store:
        sessions = await store.list_sessions()
        assert len(sessions) == 2
        child = next(s for s in sessions if s.parent_session_id)
        events = await store.get_session_conversation(child.id)
        assert events[0].claude_session_id != child.claude_session_id  # ancestor first
        assert len(events) == 9
        assert len(await store.get_mcp_servers(child.parent_session_id)) == 2
        assert await store.get_approval_count() == 1
        assert len(await store.get_file_snapshots(child.parent_session_id)) == 1
        assert "counts: sessions=2 events=9 approvals=1" in out
    # Again: another session pair in the same file.
    (await cli("demo")).ok()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 4


async def test_demo_names_its_database_as_given(cli: Cli, tmp_path: Path) -> None:
    memory, relative, url = await asyncio.gather(
        cli("demo", "--db", ":memory:"),
        cli("demo", "--db", "sub/dir/demo.db"),
        cli("demo", "--db", f"sqlite+aiosqlite:///{tmp_path / 'by-url.db'}"),
    )
    assert memory.ok().out.splitlines()[0] == "Recorded a resumed agent session into :memory:"
    assert not list(tmp_path.glob("*memory*"))
    made = tmp_path / "sub" / "dir" / "demo.db"
    assert relative.ok().out.splitlines()[0] == f"Recorded a resumed agent session into {made}"
    assert mode(made) == 0o600
    assert mode(made.parent) == 0o700 and mode(made.parent.parent) == 0o700
    first = url.ok().out.splitlines()[0]
    assert first == (
        f"Recorded a resumed agent session into sqlite+aiosqlite:///{tmp_path / 'by-url.db'}"
    )
    assert mode(tmp_path / "by-url.db") == 0o600
    for done in (memory, relative, url):
        assert f"{tmp_path}/sqlite" not in done.out and "/:memory:" not in done.out
    (await cli("demo", "--db", "")).usage_error()
    (await cli("demo", "--db", "   ")).usage_error()


async def test_demo_on_each_backend(cli: Cli, target: str) -> None:
    done = (await cli("demo", "--db", target)).ok()
    assert "counts: sessions=2 events=9 approvals=1" in done.out
    async with Store.open(target) as store:
        assert await store.get_session_count() == 2


async def test_demo_on_postgresql_never_shows_the_password(cli: Cli, postgres_url: str) -> None:
    import asyncpg

    role = f"agentstore_cli_{uuid.uuid4().hex[:8]}"
    password = f"secretpw-{uuid.uuid4().hex}"
    admin = await asyncpg.connect(
        make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        try:
            await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("the test server's role may not create roles")
        try:
            await admin.execute(f"GRANT ALL ON SCHEMA public TO {role}")
            url = make_url(postgres_url).set(username=role, password=password)
            given = url.render_as_string(hide_password=False)
            done = (await cli("demo", "--db", given)).ok()
            assert password not in done.out + done.err, str(done)
            first = done.out.splitlines()[0]
            shown = f"postgresql+asyncpg://{role}:***@{url.host}:{url.port}/{url.database}"
            assert first == f"Recorded a resumed agent session into {shown}"
            listed = (await cli("--db", given, "sessions", "list")).ok()
            assert password not in listed.out + listed.err
            assert len(tsv(listed.out)) == 3
            # The same server and role, a database that is not there: one line, no password.
            missing = url.set(database=f"agentstore_missing_{uuid.uuid4().hex[:8]}")
            failed = await cli(
                "--db", missing.render_as_string(hide_password=False), "sessions", "list"
            )
            assert failed.error_line(password)
        finally:
            await admin.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            await admin.execute(f"DROP OWNED BY {role}")
            await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()


async def test_demo_piped_into_head_exits_quietly(cli: Cli, tmp_path: Path) -> None:
    (await cli("demo")).ok()  # the file exists: no migration message on the second run
    done = await cli.shell("agentstore demo | head -2; exit ${PIPESTATUS[0]}")
    assert len(done.out.splitlines()) == 2
    assert done.err == "", str(done)


# --- sessions ------------------------------------------------------------------------------------


SESSION_COLUMNS = ["ID", "STATUS", "LAST ACTIVITY (UTC)", "TITLE", "COST", "CLAUDE SESSION"]


async def test_sessions_list_table_and_json(cli: Cli, target: str) -> None:
    c = await record_chain(target)
    async with Store.open(target) as store:
        expected = [s.to_dict() for s in await store.list_sessions(limit=50)]
    newest_first = [c.child, c.other, c.parent, c.archived]
    assert [s["id"] for s in expected] == newest_first

    table, as_json, after_db = await asyncio.gather(
        cli("--db", target, "sessions", "list"),
        cli("--db", target, "sessions", "list", "--json"),
        cli("sessions", "list", "--json", "--db", target),
    )
    rows = tsv(table.ok().out)
    assert rows[0] == SESSION_COLUMNS  # a header row, then tab-separated rows (not a TTY)
    assert [row[0] for row in rows[1:]] == newest_first
    assert all(len(row) == len(SESSION_COLUMNS) for row in rows)
    parent = next(row for row in rows if row[0] == c.parent)
    assert parent[1:] == [
        "completed",
        "2025-01-15 10:35:00",
        "Fix flaky test",
        "$0.0421",
        c.parent_claude,
    ]
    assert "\x1b[" not in table.out and "┃" not in table.out  # plain: no colour, no box
    assert as_json.ok().json == expected
    assert after_db.ok().json == expected
    for done in (table, as_json):
        assert PROXY_KEY not in done.out
    parent_json = next(s for s in as_json.json if s["id"] == c.parent)
    assert parent_json["proxy_api_key"] == ""
    assert parent_json["created_at"] == "2025-01-15T10:30:00.123456+00:00"

    def ids(done: Result) -> list[str]:
        document = done.ok().json
        assert isinstance(document, list)
        return [s["id"] for s in document]

    limited, zero, statuses, unarchived, combined = await asyncio.gather(
        cli("--db", target, "sessions", "list", "--json", "--limit", "2"),
        cli("--db", target, "sessions", "list", "--json", "--limit", "0"),
        cli(
            "--db",
            target,
            "sessions",
            "list",
            "--json",
            "--status",
            "running",
            "--status",
            "failed",
        ),
        cli("--db", target, "sessions", "list", "--json", "--no-archived"),
        cli("--db", target, "sessions", "list", "--json", "--status", "completed", "--no-archived"),
    )
    assert ids(limited) == newest_first[:2]
    assert ids(zero) == newest_first
    assert ids(statuses) == [c.child, c.other]
    assert ids(unarchived) == [c.child, c.other, c.parent]
    assert ids(combined) == [c.parent]
    limited_table = tsv((await cli("--db", target, "sessions", "list", "--limit", "1")).ok().out)
    assert limited_table == [SESSION_COLUMNS, rows[1]]


async def test_sessions_list_of_an_empty_database(cli: Cli, target: str) -> None:
    async with Store.open(target):
        pass
    table, as_json = await asyncio.gather(
        cli("--db", target, "sessions", "list"), cli("--db", target, "sessions", "list", "--json")
    )
    assert tsv(table.ok().out) == [SESSION_COLUMNS]
    assert as_json.ok().json == []


def run_on_a_terminal(args: list[str], env: Mapping[str, str], columns: int) -> tuple[str, str]:
    """``agentstore args`` with standard output on a pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(
        [str(AGENTSTORE), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        cwd=env["HOME"],
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    return b"".join(chunks).decode(), err


def table_on_a_terminal(db: Path, env: Mapping[str, str], columns: int) -> list[str]:
    out, _ = run_on_a_terminal(["--db", str(db), "sessions", "list"], env, columns)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).splitlines()


def assert_fits(lines: list[str], columns: int) -> None:
    """The whole table within ``columns``: both borders, every column with a visible header."""
    assert len(lines) >= 5, lines  # top border, header, rule, a row, bottom border
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    assert all(line[-1] in "┓┃┩│┘" for line in lines), "\n".join(lines)
    header = [cell.strip() for cell in lines[1].strip("┃").split("┃")]
    assert len(header) == len(SESSION_COLUMNS), lines[1]
    for shown, name in zip(header, SESSION_COLUMNS, strict=True):
        assert shown and name.startswith(shown.rstrip("…")), lines[1]


async def test_sessions_list_on_a_terminal_is_a_table_that_fits(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    (await cli("demo", "--db", str(db))).ok()
    for columns in (80, 100):
        lines = await asyncio.to_thread(table_on_a_terminal, db, cli.env, columns)
        assert_fits(lines, columns)
        assert not any("\t" in line for line in lines)
    wide = await asyncio.to_thread(table_on_a_terminal, db, cli.env, 160)
    assert_fits(wide, 160)
    assert "…" not in "\n".join(wide)  # nothing cut when there is room


async def test_sessions_list_on_a_terminal_fits_with_a_long_title(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    async with Store.open(db) as store:
        await store.create_session(
            Session(id="s-long", run_id="r1", query="q", title="a very long title " * 20)
        )
        await store.create_session(Session(id="sess-0123456789", run_id="r2", query="short"))
    lines = await asyncio.to_thread(table_on_a_terminal, db, cli.env, 100)
    assert_fits(lines, 100)


async def test_sessions_show_record_and_conversation(cli: Cli, target: str) -> None:
    c = await record_chain(target)
    async with Store.open(target) as store:
        session = (await store.get_session(c.child)).to_dict()
        events = [e.to_dict() for e in await store.get_session_conversation(c.child)]
        parent = (await store.get_session(c.parent)).to_dict()
    assert [(e["claude_session_id"], e["sequence"]) for e in events] == [
        (c.parent_claude, 1),
        (c.parent_claude, 2),
        (c.parent_claude, 3),
        (c.child_claude, 1),
        (c.child_claude, 2),
        (c.child_claude, 3),
    ]
    table, last, as_json, last_json, zero_json, of_parent = await asyncio.gather(
        cli("--db", target, "sessions", "show", c.child),
        cli("--db", target, "sessions", "show", c.child, "--last", "2"),
        cli("--db", target, "sessions", "show", c.child, "--json"),
        cli("sessions", "show", c.child, "--json", "--last", "1", "--db", target),
        cli("--db", target, "sessions", "show", c.child, "--json", "--last", "0"),
        cli("--db", target, "sessions", "show", c.parent, "--json"),
    )
    lines = table.ok().out.splitlines()
    assert re.fullmatch(rf"id\s+{c.child}", lines[0]), table
    assert any(re.fullmatch(rf"parent_session_id\s+{c.parent}", line) for line in lines)
    assert any(re.fullmatch(r"status\s+running", line) for line in lines)
    assert "# conversation (6 events)" in lines
    header = lines.index("CLAUDE SESSION\tSEQ\tTIME (UTC)\tTYPE\tROLE\tTEXT")
    shown = tsv("\n".join(lines[header + 1 :]))
    assert [(row[0], row[1]) for row in shown] == [
        (e["claude_session_id"], str(e["sequence"])) for e in events
    ]
    assert [row[5] for row in shown][:3] == ["p1", "p2", "p3"]
    assert shown[4][3] == "tool_call" and shown[4][5].startswith("Bash")
    assert shown[5][5] == "c3 passed"

    last_lines = last.ok().out.splitlines()
    assert "# conversation (2 events)" in last_lines
    assert [row[5] for row in tsv("\n".join(last_lines[-2:]))][-1] == "c3 passed"

    assert as_json.ok().json == {"session": session, "events": events}
    assert last_json.ok().json == {"session": session, "events": events[-1:]}
    assert zero_json.ok().json == {"session": session, "events": []}
    assert of_parent.ok().json == {"session": parent, "events": events[:3]}
    assert parent["proxy_api_key"] == ""
    assert PROXY_KEY not in of_parent.out
    parent_table = (await cli("--db", target, "sessions", "show", c.parent)).ok()
    assert PROXY_KEY not in parent_table.out

    missing, missing_json = await asyncio.gather(
        cli("--db", target, "sessions", "show", "sess-nope"),
        cli("--db", target, "sessions", "show", "sess-nope", "--json"),
    )
    for done in (missing, missing_json):
        line = done.error_line()
        assert "sess-nope" in line and "not found" in line
        assert done.out == ""
    (await cli("--db", target, "sessions", "show", c.child, "--last", "-1")).usage_error()
    (await cli("--db", target, "sessions", "show")).usage_error()


async def test_sessions_tail(cli: Cli, target: str) -> None:
    c = await record_chain(target)
    async with Store.open(target) as store:
        latest_two = [e.to_dict() for e in await store.get_conversation(c.child_claude, limit=2)]
        every = [e.to_dict() for e in await store.get_conversation(c.child_claude)]
    text, everything, as_json, unknown = await asyncio.gather(
        cli("--db", target, "sessions", "tail", c.child_claude, "--last", "2"),
        cli("--db", target, "sessions", "tail", c.child_claude),
        cli("sessions", "tail", c.child_claude, "--last", "2", "--json", "--db", target),
        cli("--db", target, "sessions", "tail", "claude-nope", "--json"),
    )
    lines = text.ok().out.splitlines()
    assert len(lines) == 2
    assert re.search(r"#2\s+tool_call\s+-\s+Bash", lines[0]), text
    assert re.search(r"#3\s+tool_result\s+user\s+c3 passed$", lines[1]), text
    assert len(everything.ok().out.splitlines()) == 3  # fewer than the default --last 20
    assert as_json.ok().json == latest_two
    assert [e["sequence"] for e in latest_two] == [2, 3]
    assert len(every) == 3
    assert unknown.ok().json == []
    (await cli("--db", target, "sessions", "tail", c.child_claude, "--last", "0")).usage_error()
    (await cli("--db", target, "sessions", "tail")).usage_error()


# --- approvals -----------------------------------------------------------------------------------


async def test_approvals_list_approve_and_deny(cli: Cli, target: str) -> None:
    first, second = await record_approvals(target)
    async with Store.open(target) as store:
        pending = [a.to_dict() for a in await store.get_pending_approvals("s1")]
        pending += [a.to_dict() for a in await store.get_pending_approvals("s2")]
    table, as_json, of_s2, of_nobody = await asyncio.gather(
        cli("--db", target, "approvals", "list"),
        cli("--db", target, "approvals", "list", "--json"),
        cli("approvals", "list", "--session", "s2", "--json", "--db", target),
        cli("--db", target, "approvals", "list", "--session", "s-nope", "--json"),
    )
    rows = tsv(table.ok().out)
    assert rows[0] == ["ID", "SESSION", "TOOL", "REQUESTED (UTC)", "INPUT"]
    assert [row[:4] for row in rows[1:]] == [
        [first, "s1", "Bash", "2025-01-15 10:30:00"],
        [second, "s2", "Edit", "2025-01-15 10:30:01"],
    ]
    assert json.loads(rows[1][4]) == {"command": "rm -rf build"}
    assert as_json.ok().json == pending
    assert pending[1]["tool_input"] == {"file_path": "a.py", "new": "ü"}  # decoded JSON
    assert of_s2.ok().json == pending[1:]
    assert of_nobody.ok().json == []

    # deny needs a reason: a usage error, and nothing is decided.
    (await cli("--db", target, "approvals", "deny", second)).usage_error()
    approved = (await cli("--db", target, "approvals", "approve", first, "--comment", "ok")).ok()
    assert approved.out.strip() == f"approved {first}: ok"
    denied = (
        await cli("approvals", "deny", second, "--comment", "not on main", "--db", target)
    ).ok()
    assert denied.out.strip() == f"denied {second}: not on main"
    async with Store.open(target) as store:
        a1, a2 = await store.get_approval(first), await store.get_approval(second)
    assert (a1.status, a1.comment) == (ApprovalStatus.APPROVED, "ok")
    assert (a2.status, a2.comment) == (ApprovalStatus.DENIED, "not on main")
    assert a1.responded_at is not None

    again = await asyncio.gather(
        cli("--db", target, "approvals", "approve", first),
        cli("--db", target, "approvals", "deny", first, "--comment", "changed my mind"),
        cli("--db", target, "approvals", "approve", second),
    )
    for done in again:
        assert "already decided" in done.error_line()
    async with Store.open(target) as store:
        assert (await store.get_approval(first)).comment == "ok"  # the first decision stands
    missing = await cli("--db", target, "approvals", "approve", "appr-nope")
    assert "appr-nope" in missing.error_line()
    empty = (await cli("--db", target, "approvals", "list", "--json")).ok()
    assert empty.json == []
    (await cli("--db", target, "approvals", "approve")).usage_error()


async def test_approve_without_a_comment(cli: Cli, target: str) -> None:
    first, _ = await record_approvals(target)
    done = (await cli("--db", target, "approvals", "approve", first)).ok()
    assert done.out.strip() == f"approved {first}"
    async with Store.open(target) as store:
        assert (await store.get_approval(first)).status == ApprovalStatus.APPROVED


# --- stats ---------------------------------------------------------------------------------------


async def test_stats_table_and_json(cli: Cli, target: str) -> None:
    await record_chain(target)
    await record_approvals(target)
    table, as_json = await asyncio.gather(
        cli("--db", target, "stats"), cli("stats", "--json", "--db", target)
    )
    document = as_json.ok().json
    assert isinstance(document, dict)
    assert set(document) >= {"rows", "file_bytes"}
    rows = document["rows"]
    assert rows["sessions"] == 6
    assert rows["conversation_events"] == 6
    assert rows["approvals"] == 2
    assert rows["user_settings"] == 1
    assert rows["mcp_servers"] == rows["raw_events"] == rows["file_snapshots"] == 0
    listed = tsv(table.ok().out)
    assert listed[0] == ["TABLE", "ROWS"]
    counts = {row[0]: row[1] for row in listed[1:]}
    for name, count in rows.items():
        assert counts[name] == str(count)
    if is_sqlite(target):
        assert document["file_bytes"] == Path(target).stat().st_size
        assert document["file_bytes"] > 0
        assert "(file size)" in counts
    else:
        assert document["file_bytes"] is None
        assert "(file size)" not in counts


# --- db ------------------------------------------------------------------------------------------


async def test_db_upgrade_current_history_check_downgrade(cli: Cli, target: str) -> None:
    head = migrations.head_revision()
    previous = scripts().get_revision(head).down_revision
    assert isinstance(previous, str)

    up = (await cli("--db", target, "db", "upgrade")).ok()
    assert up.out.strip().endswith(f"is at revision {head}")
    if is_sqlite(target):
        assert mode(Path(target)) == 0o600
        assert mode(Path(target).parent) == 0o700
        assert up.out.strip() == f"{target} is at revision {head}"
    current = (await cli("--db", target, "db", "current")).ok()
    assert current.out.strip() == f"{head} (head)"
    check = (await cli("db", "check", "--db", target)).ok()
    assert "No new upgrade operations detected" in check.out

    (await cli("--db", target, "db", "downgrade", previous)).ok()
    older = (await cli("--db", target, "db", "current")).ok()
    assert older.out.strip() == previous
    behind = await cli("--db", target, "db", "check")
    assert "not up to date" in behind.error_line()
    (await cli("--db", target, "db", "upgrade", head)).ok()
    assert (await cli("--db", target, "db", "current")).ok().out.strip() == f"{head} (head)"

    # Down to nothing and back; the data path works on the result.
    (await cli("--db", target, "db", "downgrade", "base")).ok()
    assert (await cli("--db", target, "db", "current")).ok().out.strip() == ""
    (await cli("--db", target, "db", "upgrade")).ok()
    assert (await cli("--db", target, "db", "current")).ok().out.strip() == f"{head} (head)"
    await record_chain(target)
    assert len(tsv((await cli("--db", target, "sessions", "list")).ok().out)) == 5


async def test_db_downgrade_takes_a_relative_step(cli: Cli, tmp_path: Path) -> None:
    """``db downgrade -1`` as with Alembic's own command line (exactly one step back)."""
    db = str(tmp_path / "agent.db")
    head = migrations.head_revision()
    previous = scripts().get_revision(head).down_revision
    (await cli("--db", db, "db", "upgrade")).ok()
    (await cli("--db", db, "db", "downgrade", "--", "-1")).ok()
    assert (await cli("--db", db, "db", "current")).ok().out.strip() == previous
    (await cli("--db", db, "db", "upgrade", "+1")).ok()
    assert (await cli("--db", db, "db", "current")).ok().out.strip() == f"{head} (head)"


async def test_db_downgrade_minus_one_without_double_dash(cli: Cli, tmp_path: Path) -> None:
    db = str(tmp_path / "agent.db")
    previous = scripts().get_revision(migrations.head_revision()).down_revision
    (await cli("--db", db, "db", "upgrade")).ok()
    (await cli("--db", db, "db", "downgrade", "-1")).ok()
    assert (await cli("--db", db, "db", "current")).ok().out.strip() == previous


async def test_db_history_lists_the_packaged_revisions(cli: Cli) -> None:
    done = (await cli("db", "history")).ok()  # reads no database
    revisions = [script.revision for script in scripts().walk_revisions()]
    assert revisions[0] == migrations.head_revision()
    positions = [done.out.index(f"-> {revision}") for revision in revisions]
    assert positions == sorted(positions)  # newest first
    assert done.out.startswith(f"{revisions[1]} -> {revisions[0]} (head)")
    assert f"<base> -> {revisions[-1]}" in done.out
    assert not (cli.home / ".agentstore").exists()


async def test_db_on_an_in_memory_database_is_a_usage_error(cli: Cli) -> None:
    for command in (["db", "current"], ["db", "check"], ["db", "downgrade", "base"]):
        (await cli("--db", ":memory:", *command)).usage_error()


def build_wheel_site(into: Path) -> Path:
    """agentstore's wheel, built from this tree and installed alone into ``into``."""
    dist = into / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, ROOT],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("agentstore-*.whl")
    site = into / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", "--target", site, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


def test_db_commands_work_from_the_wheel_alone(tmp_path: Path) -> None:
    """The wheel carries its revisions: no checkout, no alembic.ini, a folder of its own."""
    site = build_wheel_site(tmp_path / "build")
    assert (site / "agentstore" / "_migrations" / "env.py").exists()
    work = tmp_path / "work"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "AGENTSTORE_DATABASE_URL"}
    env.update(HOME=str(work), PYTHONPATH=str(site))

    def wheel_cli(*args: str) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "agentstore.cli", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Result(args, done.returncode, done.stdout, done.stderr)

    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import agentstore.migrations as m; print(m.__file__); print(m.script_location())",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert where[0].startswith(str(site)) and where[1].startswith(str(site)), where
    head = migrations.head_revision()
    previous = scripts().get_revision(head).down_revision
    assert isinstance(previous, str)
    db = "agent.db"
    wheel_cli("--db", db, "db", "upgrade").ok()
    assert wheel_cli("--db", db, "db", "current").ok().out.strip() == f"{head} (head)"
    assert "No new upgrade operations" in wheel_cli("--db", db, "db", "check").ok().out
    wheel_cli("--db", db, "db", "downgrade", previous).ok()
    assert wheel_cli("--db", db, "db", "current").ok().out.strip() == previous
    wheel_cli("--db", db, "db", "upgrade").ok()
    history = wheel_cli("db", "history").ok().out
    assert f"-> {head} (head)" in history
    assert not list(work.glob("alembic*"))
    assert mode(work / db) == 0o600


def test_alembic_in_a_checkout_keeps_working(tmp_path: Path) -> None:
    alembic = Path(sys.executable).parent / "alembic"
    db = tmp_path / "by-alembic.db"
    env = dict(os.environ, AGENTSTORE_DATABASE_URL=f"sqlite+aiosqlite:///{db}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(alembic), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done

    run("upgrade", "head")
    assert migrations.head_revision() in run("current").stdout
    run("downgrade", "-1")
    run("upgrade", "head")
    assert f"{migrations.head_revision()} (head)" in run("current").stdout


# --- adopt ---------------------------------------------------------------------------------------


def copy_fixture(hld_fixtures: Path, name: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    copy = into / f"{name}.db"
    shutil.copy(hld_fixtures / f"{name}.db", copy)
    copy.chmod(0o600)
    return copy


async def test_adopt_an_hld_database(cli: Cli, tmp_path: Path, hld_fixtures: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v13", tmp_path / "hld")
    done = (await cli("adopt", str(db))).ok()
    (backup,) = (tmp_path / "hld").glob("*.bak")
    assert mode(backup) == 0o600
    out = done.out
    assert out.splitlines()[0] == f"Adopted hld database {db} (hld schema version 13)."
    assert f"Backup written first: {backup}" in out
    assert "hld 14: added approvals.tool_use_id" in out
    assert "hld 14: backfilled approvals.tool_use_id on 2 rows" in out
    assert "hld 16: created user_settings" in out
    assert "sessions=3" in out and "conversation_events=22" in out
    assert f"Now at agentstore revision {migrations.head_revision()}" in out
    # The backup is the file as hld left it; the file is now agentstore's.
    with sqlite3.connect(backup) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 13
    listed = (await cli("--db", str(db), "sessions", "list", "--json")).ok().json
    assert isinstance(listed, list) and len(listed) == 3
    current = (await cli("--db", str(db), "db", "current")).ok()
    assert current.out.strip() == f"{migrations.head_revision()} (head)"


async def test_adopt_without_a_backup(cli: Cli, tmp_path: Path, hld_fixtures: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v17_buggy", tmp_path / "hld")
    done = (await cli("adopt", "--no-backup", str(db))).ok()
    assert not list((tmp_path / "hld").glob("*.bak"))
    assert "Backup" not in done.out
    assert "added sessions.additional_directories" in done.out


async def test_adopt_a_relative_path(cli: Cli, tmp_path: Path, hld_fixtures: Path) -> None:
    db = copy_fixture(hld_fixtures, "hld_v22_populated", tmp_path / "old daemon")
    done = (await cli("adopt", "old daemon/hld_v22_populated.db")).ok()
    assert done.out.splitlines()[0] == f"Adopted hld database {db} (hld schema version 22)."
    assert "Nothing to heal" in done.out
    assert len(list((tmp_path / "old daemon").glob("*.bak"))) == 1
    from_inside = copy_fixture(hld_fixtures, "hld_v13", tmp_path / "inside")
    (await cli("adopt", "hld_v13.db", cwd=tmp_path / "inside")).ok()
    async with Store.open(from_inside, migrate=False) as store:
        assert await store.get_session_count() == 3


async def test_adopt_refuses_what_is_not_an_hld_database(
    cli: Cli, tmp_path: Path, hld_fixtures: Path
) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.close()
    ours = tmp_path / "ours.db"
    async with Store.open(ours):
        pass
    noise = tmp_path / "noise.db"
    noise.write_bytes(os.urandom(8192))
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    files = [other, ours, noise, text]
    before = {path: path.read_bytes() for path in files}
    results = await asyncio.gather(*(cli("adopt", str(path)) for path in files))
    for path, done in zip(files, results, strict=True):
        line = done.error_line()
        assert str(path) in line
        assert path.read_bytes() == before[path]
    assert not list(tmp_path.glob("*.bak"))
    assert "not an hld database" in results[0].err and "not an hld database" in results[1].err
    missing = await cli("adopt", str(tmp_path / "missing.db"))
    assert "does not exist" in missing.error_line()
    assert not (tmp_path / "missing.db").exists()


async def test_adopt_needs_a_path(cli: Cli, tmp_path: Path, hld_fixtures: Path) -> None:
    copy_fixture(hld_fixtures, "hld_v13", tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (["adopt", ""], ["adopt", "   "], ["adopt"]):
        (await cli(*args)).usage_error()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # "" is not "."


# --- which database ------------------------------------------------------------------------------


async def test_database_precedence(cli: Cli, tmp_path: Path) -> None:
    """--db (on the command, else before it), else $AGENTSTORE_DATABASE_URL, else the default."""
    named = {
        "before": tmp_path / "before.db",
        "after": tmp_path / "after.db",
        "env": tmp_path / "env.db",
        "default": tmp_path / ".agentstore" / "agent.db",
    }
    for name, path in named.items():
        async with Store.open(path) as store:
            await store.create_session(Session(id=name, run_id=name, query="q"))
    env = {"AGENTSTORE_DATABASE_URL": f"sqlite+aiosqlite:///{named['env']}"}
    plain_env = {"AGENTSTORE_DATABASE_URL": str(named["env"])}
    before, after = ("--db", str(named["before"])), ("--db", str(named["after"]))
    listing = ("sessions", "list", "--json")
    cases = [
        ((*listing,), None, "default"),
        ((*listing,), env, "env"),
        ((*listing,), plain_env, "env"),
        ((*before, *listing), env, "before"),
        ((*listing, *after), env, "after"),
        ((*before, *listing), None, "before"),
        ((*before, *listing, *after), env, "after"),
    ]
    results = await asyncio.gather(*(cli(*args, env=extra) for args, extra, _ in cases))
    for (_, _, expected), done in zip(cases, results, strict=True):
        document = done.ok().json
        assert isinstance(document, list)
        assert [s["id"] for s in document] == [expected], str(done)
    (await cli("sessions", "list", env={"AGENTSTORE_DATABASE_URL": ""})).ok()  # unset = default
    (await cli("sessions", "list", "--db", "", env=env)).usage_error()
    (await cli("--db", " ", "sessions", "list", env=env)).usage_error()


async def test_an_empty_db_before_the_command_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    default = tmp_path / ".agentstore" / "agent.db"
    async with Store.open(default):
        pass
    done = await cli("--db", "", "sessions", "list")
    done.usage_error()


async def test_default_database_is_private(cli: Cli, tmp_path: Path) -> None:
    done = (await cli("db", "upgrade")).ok()
    db = tmp_path / ".agentstore" / "agent.db"
    assert done.out.strip() == f"{db} is at revision {migrations.head_revision()}"
    assert mode(db) == 0o600
    assert mode(db.parent) == 0o700
    assert tsv((await cli("sessions", "list")).ok().out) == [SESSION_COLUMNS]
    async with Store.open(db) as store:
        await store.create_session(Session(id="mine", run_id="r", query="q"))
    listed = (await cli("sessions", "list", "--json")).ok().json
    assert isinstance(listed, list) and [s["id"] for s in listed] == ["mine"]


# --- errors --------------------------------------------------------------------------------------


async def test_unreachable_postgresql_is_one_line_without_the_password(cli: Cli) -> None:
    commands = [
        ["sessions", "list", "--json"],
        ["sessions", "show", "x"],
        ["approvals", "approve", "x"],
        ["stats"],
        ["db", "upgrade"],
        ["db", "current"],
    ]
    runs = [(UNREACHABLE, command) for command in commands]
    runs += [(UNREACHABLE_QUERY, command) for command in (["sessions", "list"], ["db", "check"])]
    results = await asyncio.gather(*(cli("--db", url, *command) for url, command in runs))
    results += await asyncio.gather(
        cli("demo", "--db", UNREACHABLE),
        cli("demo", "--db", UNREACHABLE_QUERY),
        cli("stats", env={"AGENTSTORE_DATABASE_URL": UNREACHABLE}),
        cli("sessions", "list", env={"AGENTSTORE_DATABASE_URL": UNREACHABLE_QUERY}),
    )
    for done in results:
        done.error_line(SECRET)
        assert done.out == ""


async def test_a_file_of_random_bytes_is_one_line_and_left_alone(cli: Cli, tmp_path: Path) -> None:
    noise = tmp_path / "noise.db"
    noise.write_bytes(os.urandom(16384))
    before = noise.read_bytes()
    commands = [
        ["sessions", "list"],
        ["sessions", "show", "x"],
        ["approvals", "list"],
        ["stats", "--json"],
        ["db", "upgrade"],
        ["db", "current"],
        ["demo", "--db", str(noise)],
    ]
    results = await asyncio.gather(
        *(
            cli(*(command if command[0] == "demo" else ["--db", str(noise), *command]))
            for command in commands
        )
    )
    for done in results:
        assert str(noise) in done.error_line()
    assert noise.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.db"]


async def test_bad_database_urls_are_one_line(cli: Cli) -> None:
    urls = [
        "mysql://agent:hunter2-pw@db.example/agentstore",
        "postgresql+asyncpg://agent:hunter2-pw@127.0.0.1:notaport/agentstore",
        "postgresql+psycopg2://agent:hunter2-pw@127.0.0.1:1/agentstore",
        "://nothing",
        "not a url://agent:hunter2-pw@x",
    ]
    results = await asyncio.gather(*(cli("--db", url, "sessions", "list") for url in urls))
    for done in results:
        done.error_line("hunter2-pw")


async def test_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    db = str(tmp_path / "agent.db")
    async with Store.open(db):
        pass
    cases = [
        ["frobnicate"],
        ["--no-such-option"],
        ["sessions"],
        ["sessions", "list", "--db", db, "--limit", "-1"],
        ["sessions", "list", "--db", db, "--limit", "many"],
        ["sessions", "list", "--db", db, "--status", "sleeping"],
        ["sessions", "show", "--db", db],
        ["approvals", "deny", "x", "--db", db],
        ["db", "frobnicate"],
        ["db", "downgrade", "--db", db],
        ["stats", "--db", ""],
        ["--db", "   ", "stats"],
        ["adopt", ""],
    ]
    results = await asyncio.gather(*(cli(*args) for args in cases))
    for done in results:
        done.usage_error()
        assert done.out == ""
    assert (await cli("sessions")).err.startswith("Usage: agentstore sessions")


async def test_debug_shows_the_traceback(cli: Cli, tmp_path: Path) -> None:
    noise = tmp_path / "noise.db"
    noise.write_bytes(os.urandom(8192))
    quiet, debug, debug_after = await asyncio.gather(
        cli("--db", str(noise), "stats"),
        cli("--debug", "--db", str(noise), "stats"),
        cli("--db", str(noise), "--debug", "sessions", "list"),
    )
    line = quiet.error_line()
    for done in (debug, debug_after):
        assert done.code == 1, str(done)
        assert "Traceback (most recent call last)" in done.err
        assert done.err.splitlines()[-1] == line
    secret_debug = await cli("--debug", "--db", UNREACHABLE, "stats")
    assert secret_debug.code == 1
    assert "Traceback" in secret_debug.err
    assert secret_debug.err.splitlines()[-1].startswith("agentstore: ")
    assert SECRET not in secret_debug.err.splitlines()[-1]


async def test_a_listing_piped_into_head_stops_quietly(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "many.db"
    async with Store.open(db) as store, store.transaction() as tx:
        for i in range(2000):
            await tx.sessions.create(
                Session(id=f"s{i:05d}", run_id=f"r{i}", query="a long query " * 15)
            )
    for command in (
        f"agentstore --db '{db}' sessions list --limit 0 | head -1",
        f"agentstore sessions list --limit 0 --json --db '{db}' | head -1",
        f"agentstore --db '{db}' sessions list --limit 0 | head -c 10",
    ):
        done = await cli.shell(command)
        assert done.code == 0, str(done)
        assert done.err == "", str(done)
        assert len(done.out.splitlines()) == 1
    assert (await cli.shell(f"agentstore --db '{db}' sessions list --limit 0 | head -1")).out == (
        "\t".join(SESSION_COLUMNS) + "\n"
    )


@pytest.fixture
async def running_postgres_store(postgres_url: str) -> AsyncIterator[str]:
    """A PostgreSQL database with a session in it (CI)."""
    async with Store.open(postgres_url) as store:
        await store.create_session(Session(id="pg-1", run_id="r", query="q"))
    yield postgres_url


async def test_postgresql_url_from_the_environment(cli: Cli, running_postgres_store: str) -> None:
    listed = (
        await cli(
            "sessions", "list", "--json", env={"AGENTSTORE_DATABASE_URL": running_postgres_store}
        )
    ).ok()
    document = listed.json
    assert isinstance(document, list) and [s["id"] for s in document] == ["pg-1"]
