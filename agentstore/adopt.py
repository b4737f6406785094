"""Adopting an existing hld ``daemon.db`` in place (SPEC §6).

A file with hld's ``schema_version`` ledger and no ``alembic_version`` table is an hld
database. Adoption, run by ``Store.open``, ``alembic upgrade head`` and ``agentstore adopt``
alike (it lives in the migration environment), does, in one transaction:

1. heal what hld's own migrations 3–22 would heal, with hld's own statements and hld's own
   "is it already there?" checks — so the broken "version 17" state (no
   ``sessions.additional_directories``) and the state hld's test simulates are healed as hld
   heals them, and hld's migration 14 backfills ``approvals.tool_use_id``;
2. record the hld versions it applied in ``schema_version``, as hld does;
3. stamp the baseline revision (hld schema 22), after which Alembic applies every later
   revision (such as the unique ``(claude_session_id, sequence)`` index, which first
   renumbers any duplicate sequences hld wrote — see that revision).

Before it changes anything it writes a consistent copy of the file beside it with SQLite's
backup API (``<name>.pre-agentstore-<UTC time>.bak``, mode 0600) unless told not to. If
anything fails the transaction rolls back and the original is left as it was.

Rows that need no healing are not rewritten: hld's timestamps (nanoseconds, offsets) keep
their stored text byte for byte, and the store reads them by instant.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.request import pathname2url

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentstore.errors import DatabaseError, SchemaTooNewError
from agentstore.hld import HLD_LEDGER, HLD_SCHEMA_VERSION, HLD_V22_SQLITE_DDL

__all__ = ["AdoptionReport", "backup_file", "heal_and_stamp"]

BASELINE_REVISION = "0001_hld_v22"

# hld's ADD COLUMN statements, by the hld version that adds them, in hld's order.
_COLUMNS: tuple[tuple[int, str, str, str], ...] = (
    (3, "sessions", "permission_prompt_tool", "TEXT"),
    (3, "sessions", "append_system_prompt", "TEXT"),
    (3, "sessions", "allowed_tools", "TEXT"),
    (3, "sessions", "disallowed_tools", "TEXT"),
    (6, "conversation_events", "parent_tool_use_id", "TEXT"),
    (8, "sessions", "auto_accept_edits", "BOOLEAN DEFAULT 0"),
    (9, "sessions", "archived", "BOOLEAN DEFAULT FALSE"),
    (10, "sessions", "title", "TEXT DEFAULT ''"),
    (11, "sessions", "dangerously_skip_permissions", "BOOLEAN DEFAULT 0"),
    (11, "sessions", "dangerously_skip_permissions_expires_at", "TIMESTAMP"),
    (12, "sessions", "model_id", "TEXT"),
    (13, "sessions", "input_tokens", "INTEGER"),
    (13, "sessions", "output_tokens", "INTEGER"),
    (13, "sessions", "cache_creation_input_tokens", "INTEGER"),
    (13, "sessions", "cache_read_input_tokens", "INTEGER"),
    (13, "sessions", "effective_context_tokens", "INTEGER"),
    (14, "approvals", "tool_use_id", "TEXT"),
    (15, "sessions", "proxy_enabled", "BOOLEAN DEFAULT 0"),
    (15, "sessions", "proxy_base_url", "TEXT DEFAULT ''"),
    (15, "sessions", "proxy_model_override", "TEXT DEFAULT ''"),
    (15, "sessions", "proxy_api_key", "TEXT DEFAULT ''"),
    (18, "sessions", "additional_directories", "TEXT"),
    (19, "user_settings", "opt_in_telemetry", "BOOLEAN DEFAULT NULL"),
    (20, "sessions", "editor_state", "TEXT"),
    (21, "sessions", "dangerously_skip_permissions_timeout_ms", "INTEGER"),
)

# Tables and indexes hld creates (IF NOT EXISTS) by version; the DDL text is hld's v22 text.
_OBJECTS: tuple[tuple[int, str], ...] = (
    (4, "approvals"),
    (4, "idx_approvals_pending"),
    (4, "idx_approvals_session"),
    (4, "idx_approvals_run_id"),
    (5, "idx_sessions_parent"),
    (6, "idx_conversation_parent_tool"),
    (7, "file_snapshots"),
    (7, "idx_snapshots_session_path"),
    (7, "idx_snapshots_tool"),
    (9, "idx_sessions_archived"),
    (14, "idx_approvals_tool_use_id"),
    (16, "user_settings"),
    (22, "idx_sessions_title"),
    (22, "idx_sessions_last_activity"),
)

# hld migration 14: an approval takes the tool id of an event correlated with it.
_BACKFILL_TOOL_USE_ID = (
    "UPDATE approvals SET tool_use_id = ("
    "SELECT ce.tool_id FROM conversation_events ce "
    "WHERE ce.approval_id = approvals.id AND ce.tool_id IS NOT NULL LIMIT 1) "
    "WHERE EXISTS (SELECT 1 FROM conversation_events ce "
    "WHERE ce.approval_id = approvals.id AND ce.tool_id IS NOT NULL)"
)
_DEFAULT_SETTINGS = (
    "INSERT INTO user_settings (id, advanced_providers) VALUES (1, FALSE) "
    "ON CONFLICT(id) DO NOTHING"
)


def _ddl(name: str) -> str:
    for statement in HLD_V22_SQLITE_DDL:
        words = statement.replace("(", " ").split()  # CREATE TABLE|INDEX <name> ...
        if words[2] == name:
            return statement
    raise KeyError(name)


@dataclass
class AdoptionReport:
    """What adoption found and did."""

    path: str
    hld_version: int
    backup: str | None = None
    actions: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    renumbered_events: int = 0
    revision: str | None = None

    def describe(self) -> str:
        """A human-readable account, for ``agentstore adopt``."""
        lines = [f"Adopted hld database {self.path} (hld schema version {self.hld_version})."]
        if self.backup:
            lines.append(f"Backup written first: {self.backup}")
        lines.append("Rows kept: " + ", ".join(f"{t}={n}" for t, n in self.rows.items()))
        if self.actions:
            lines.append("Healed as hld's own migrations would:")
            lines.extend(f"  - {action}" for action in self.actions)
        else:
            lines.append("Nothing to heal: the schema was hld's version 22.")
        if self.renumbered_events:
            lines.append(
                f"Renumbered {self.renumbered_events} events whose (claude_session_id, sequence) "
                "was duplicated, in (sequence, id) order."
            )
        lines.append(f"Now at agentstore revision {self.revision}; hld can still open the file.")
        return "\n".join(lines)


def _tables(conn: Connection) -> set[str]:
    return {
        row[0]
        for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
    }


def _objects(conn: Connection) -> set[str]:
    return {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master")}


def _quoted(name: str) -> str:
    """An SQL identifier for a name read from sqlite_master (which may be any text)."""
    return '"' + name.replace('"', '""') + '"'


def _columns(conn: Connection, table: str) -> set[str]:
    return {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({_quoted(table)})")}


def backup_file(conn: Connection, database: str) -> str:
    """Copy the database beside itself with SQLite's backup API; returns the copy's path."""
    source = Path(database).absolute()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = source.with_name(f"{source.name}.pre-agentstore-{stamp}.bak")
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        # A second, plain connection: it reads the committed state (our transaction has
        # not written anything yet), consistently, even while hld itself is writing.
        # file:// plus the escaped absolute path: right for "#", "?", "%" and a leading "//".
        src = sqlite3.connect(f"file://{pathname2url(str(source))}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except BaseException:
        target.unlink(missing_ok=True)  # no empty or partial backup is left behind
        raise
    return str(target)


def heal_and_stamp(
    conn: Connection,
    *,
    backup: bool = True,
    report: AdoptionReport | None = None,
    database: str | None = None,
) -> AdoptionReport:
    """Heal an hld database to hld's v22 schema and stamp the baseline revision.

    Runs inside the caller's migration transaction, with foreign keys off. ``database`` is
    the file's path (for the backup), when the connection's URL does not name it.
    """
    if conn.dialect.name != "sqlite":
        raise DatabaseError("hld databases are SQLite files; there is nothing to adopt here")
    version = int(conn.exec_driver_sql("SELECT MAX(version) FROM schema_version").scalar() or 0)
    if version > HLD_SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"this hld database is at hld schema version {version}; agentstore knows hld up "
            f"to version {HLD_SCHEMA_VERSION}. Nothing was changed."
        )
    database = database or conn.engine.url.database or ""
    report = report or AdoptionReport(path=database, hld_version=version)
    report.hld_version = version
    if backup and database not in ("", ":memory:"):
        report.backup = backup_file(conn, database)
    tables = _tables(conn)
    report.rows = {
        table: int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {_quoted(table)}").scalar() or 0)  # noqa: S608
        for table in sorted(tables)
        if table not in ("sqlite_sequence",)
    }
    # hld's order: by version; within one, its columns before its tables and indexes.
    steps = sorted(
        [(v, 0, i, table, column, decl) for i, (v, table, column, decl) in enumerate(_COLUMNS)]
        + [(v, 1, i, name, "", "") for i, (v, name) in enumerate(_OBJECTS)]
    )
    for hld_version, kind, _, name, column, decl in steps:
        if kind == 0:
            if name in _tables(conn) and column not in _columns(conn, name):
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column} {decl}")
                report.actions.append(f"hld {hld_version}: added {name}.{column}")
        elif name not in _objects(conn):
            conn.exec_driver_sql(_ddl(name))
            report.actions.append(f"hld {hld_version}: created {name}")
            if name == "user_settings":
                conn.exec_driver_sql(_DEFAULT_SETTINGS)
        if hld_version == 14 and kind == 1 and name == "idx_approvals_tool_use_id" and version < 14:
            changed = conn.exec_driver_sql(_BACKFILL_TOOL_USE_ID).rowcount
            report.actions.append(f"hld 14: backfilled approvals.tool_use_id on {changed} rows")
        if hld_version == 16 and name == "user_settings" and version < 16:
            conn.exec_driver_sql(_DEFAULT_SETTINGS)
    recorded = [(v, d) for v, d in HLD_LEDGER if v > version]
    for v, description in recorded:
        conn.execute(
            sa.text("INSERT INTO schema_version (version, description) VALUES (:v, :d)"),
            {"v": v, "d": description},
        )
    if recorded:
        report.actions.append(
            "recorded hld versions " + ", ".join(str(v) for v, _ in recorded) + " in schema_version"
        )
    _stamp_baseline(conn)
    return report


def _stamp_baseline(conn: Connection) -> None:
    # Alembic's own version table, created as Alembic creates it.
    version_table = sa.Table(
        "alembic_version",
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version_table.create(conn, checkfirst=True)
    conn.execute(sa.delete(version_table))
    conn.execute(sa.insert(version_table).values(version_num=BASELINE_REVISION))
