"""Full-text search: an index of session titles, summaries and queries and of event
contents, tool inputs and tool results, kept by triggers, built here for existing rows.

**SQLite**: an FTS4 table, ``agentstore_search``, and triggers on ``sessions`` and
``conversation_events``. hld is built on go-sqlite3's default SQLite, which has FTS3/FTS4
(with the ``unicode61`` tokenizer) but not FTS5; triggers that wrote to an FTS5 table would
make every hld insert fail on a shared file ("no such module: fts5"). With FTS4, the rows an
hld daemon writes are indexed by the same triggers as agentstore's. One row per non-empty
field; its ``docid`` names the row and the field: ``events.id * 8 + 3/4/5`` (content, tool
input, tool result), ``sessions.rowid * 8 + 0/1/2`` (title, summary, query); the row's
``session_id`` is stored beside it (not indexed) for searches within a session. Tokens are
cut and folded by ``unicode61`` with ``remove_diacritics=2`` (see ``agentstore.unicode61``).

**PostgreSQL**: a table of ``tsvector`` documents with a GIN index, kept by triggers. A
document holds the words SQLite's tokenizer would see, cut and folded by
``agentstore_words`` from the same tables (``agentstore.unicode61``, read from SQLite's own
tokenizer: no extension, no dependence on the database's locale) and put into a tsvector
by ``agentstore_document`` without a text search parser, which would cut them again.

Building the index for a large existing database takes a while (adopting an hld file runs
this revision): progress is logged on the ``agentstore`` logger.

Revision ID: 0005_search
Revises: 0004_pg_change_notifications
Create Date: 2026-11-29
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import sqlalchemy as sa

from agentstore.unicode61 import PG_DOCUMENT_FUNCTION, PG_WORDS_FUNCTION
from alembic import context, op

revision: str = "0005_search"
down_revision: str | Sequence[str] | None = "0004_pg_change_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("agentstore")

BUILD_BATCH = 20_000

# --- SQLite -----------------------------------------------------------------------------------


def _sqlite_event_rows(prefix: str) -> str:
    # The non-empty searchable fields of one event as (docid, body, session_id).
    return (
        f"SELECT {prefix}.id * 8 + f.code, f.body, {prefix}.session_id FROM ("
        f"SELECT 3 AS code, {prefix}.content AS body "
        f"UNION ALL SELECT 4, {prefix}.tool_input_json "
        f"UNION ALL SELECT 5, {prefix}.tool_result_content) AS f "
        "WHERE coalesce(f.body, '') <> ''"
    )


def _sqlite_session_rows(prefix: str) -> str:
    return (
        f"SELECT {prefix}.rowid * 8 + f.code, f.body, {prefix}.id FROM ("
        f"SELECT 0 AS code, {prefix}.title AS body "
        f"UNION ALL SELECT 1, {prefix}.summary "
        f"UNION ALL SELECT 2, {prefix}.query) AS f "
        "WHERE coalesce(f.body, '') <> ''"
    )


_INSERT = "INSERT INTO agentstore_search (docid, body, session_id) "


def _upgrade_sqlite() -> None:
    op.execute(
        "CREATE VIRTUAL TABLE agentstore_search USING fts4("
        'body, session_id, notindexed=session_id, tokenize=unicode61 "remove_diacritics=2")'
    )
    event_docids = "OLD.id * 8 + 3, OLD.id * 8 + 4, OLD.id * 8 + 5"
    session_docids = "OLD.rowid * 8, OLD.rowid * 8 + 1, OLD.rowid * 8 + 2"
    op.execute(
        "CREATE TRIGGER agentstore_search_events_insert AFTER INSERT ON conversation_events "
        f"BEGIN {_INSERT}{_sqlite_event_rows('NEW')}; END"
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_events_update AFTER UPDATE OF "
        "content, tool_input_json, tool_result_content, session_id "
        "ON conversation_events BEGIN "
        f"DELETE FROM agentstore_search WHERE docid IN ({event_docids}); "
        f"{_INSERT}{_sqlite_event_rows('NEW')}; END"
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_events_delete AFTER DELETE ON conversation_events "
        f"BEGIN DELETE FROM agentstore_search WHERE docid IN ({event_docids}); END"
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_sessions_insert AFTER INSERT ON sessions "
        f"BEGIN {_INSERT}{_sqlite_session_rows('NEW')}; END"
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_sessions_update AFTER UPDATE OF "
        "title, summary, query, id ON sessions BEGIN "
        f"DELETE FROM agentstore_search WHERE docid IN ({session_docids}); "
        f"{_INSERT}{_sqlite_session_rows('NEW')}; END"
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_sessions_delete AFTER DELETE ON sessions "
        f"BEGIN DELETE FROM agentstore_search WHERE docid IN ({session_docids}); END"
    )
    # Existing rows: one SELECT per field (SQLite has no LATERAL join).
    sessions = _INSERT + " UNION ALL ".join(
        f"SELECT rowid * 8 + {code}, {column}, id FROM sessions WHERE coalesce({column}, '') <> ''"
        for code, column in ((0, "title"), (1, "summary"), (2, "query"))
    )
    events = _INSERT + " UNION ALL ".join(
        f"SELECT id * 8 + {code}, {column}, session_id "
        f"FROM conversation_events WHERE coalesce({column}, '') <> '' {{range}}"
        for code, column in ((3, "content"), (4, "tool_input_json"), (5, "tool_result_content"))
    )
    if context.is_offline_mode():
        op.execute(sessions)
        op.execute(events.format(range=""))
    else:
        _build(sessions, events.format(range="AND id > {low} AND id <= {high}"))
        op.execute("INSERT INTO agentstore_search (agentstore_search) VALUES ('optimize')")


def _build(sessions_sql: str, events_sql: str) -> None:
    """Index what is already stored, in batches, logging progress. ``events_sql`` takes the
    batch's id range as ``{low}``/``{high}`` (integers read from the table, not input)."""
    bind = op.get_bind()
    bind.exec_driver_sql(sessions_sql)
    low, high = bind.execute(
        sa.text("SELECT COALESCE(MIN(id), 1) - 1, COALESCE(MAX(id), 0) FROM conversation_events")
    ).one()
    total = high - low
    if total <= 0:
        return
    started = time.monotonic()
    logged = started
    done = low
    while done < high:
        upper = min(done + BUILD_BATCH, high)
        bind.exec_driver_sql(events_sql.format(low=int(done), high=int(upper)))
        done = upper
        now = time.monotonic()
        if now - logged >= 2 or done == high:
            logger.info(
                "building the search index: events up to id %d of %d (%.0f s)",
                done,
                high,
                now - started,
            )
            logged = now


def _downgrade_sqlite() -> None:
    for suffix in ("events_insert", "events_update", "events_delete"):
        op.execute(f"DROP TRIGGER agentstore_search_{suffix}")
    for suffix in ("sessions_insert", "sessions_update", "sessions_delete"):
        op.execute(f"DROP TRIGGER agentstore_search_{suffix}")
    op.execute("DROP TABLE agentstore_search")


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_event_rows(prefix: str) -> str:
    return (
        f"SELECT {prefix}.id, {prefix}.session_id, f.code, {prefix}.created_at, "
        "agentstore_document(f.body) "
        f"FROM (VALUES (3, {prefix}.content), (4, {prefix}.tool_input_json), "
        f"(5, {prefix}.tool_result_content)) AS f(code, body) "
        "WHERE coalesce(f.body, '') <> ''"
    )


def _pg_session_rows(prefix: str) -> str:
    return (
        f"SELECT NULL::bigint, {prefix}.id, f.code, {prefix}.created_at, "
        "agentstore_document(f.body) "
        f"FROM (VALUES (0, {prefix}.title), (1, {prefix}.summary), (2, {prefix}.query)) "
        "AS f(code, body) WHERE coalesce(f.body, '') <> ''"
    )


_PG_INSERT = "INSERT INTO agentstore_search (event_id, session_id, field, created_at, document) "


def _upgrade_postgresql() -> None:
    op.execute(PG_WORDS_FUNCTION)
    op.execute(PG_DOCUMENT_FUNCTION)
    op.execute(
        "CREATE TABLE agentstore_search ("
        "event_id bigint, session_id text NOT NULL, field smallint NOT NULL, "
        "created_at timestamptz, document tsvector NOT NULL)"
    )
    op.execute(
        "CREATE UNIQUE INDEX ix_agentstore_search_event ON agentstore_search (event_id, field) "
        "WHERE event_id IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_agentstore_search_session ON agentstore_search (session_id)")
    op.execute(
        "CREATE INDEX ix_agentstore_search_document ON agentstore_search USING gin (document)"
    )
    op.execute(
        f"""
CREATE FUNCTION agentstore_search_events_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_PG_INSERT}SELECT n.id, n.session_id, f.code, n.created_at,
        agentstore_document(f.body)
    FROM new_rows n CROSS JOIN LATERAL (VALUES (3, n.content), (4, n.tool_input_json),
        (5, n.tool_result_content)) AS f(code, body)
    WHERE coalesce(f.body, '') <> '';
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_events_insert AFTER INSERT ON conversation_events "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION agentstore_search_events_inserted()"
    )
    op.execute(
        f"""
CREATE FUNCTION agentstore_search_events_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM agentstore_search WHERE event_id = OLD.id;
    IF TG_OP = 'UPDATE' THEN
        {_PG_INSERT}{_pg_event_rows("NEW")};
    END IF;
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_events_update AFTER UPDATE OF "
        "content, tool_input_json, tool_result_content, session_id, created_at "
        "ON conversation_events FOR EACH ROW EXECUTE FUNCTION agentstore_search_events_changed()"
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_events_delete AFTER DELETE ON conversation_events "
        "FOR EACH ROW EXECUTE FUNCTION agentstore_search_events_changed()"
    )
    op.execute(
        f"""
CREATE FUNCTION agentstore_search_sessions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM agentstore_search WHERE event_id IS NULL AND session_id = OLD.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_PG_INSERT}{_pg_session_rows("NEW")};
    END IF;
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER agentstore_search_sessions_change AFTER INSERT OR DELETE OR UPDATE OF "
        "title, summary, query, id, created_at ON sessions "
        "FOR EACH ROW EXECUTE FUNCTION agentstore_search_sessions_changed()"
    )
    sessions = f"{_PG_INSERT}{_pg_session_rows('s')}".replace(
        " FROM (VALUES", " FROM sessions s CROSS JOIN LATERAL (VALUES", 1
    )
    events = f"{_PG_INSERT}{_pg_event_rows('e')}".replace(
        " FROM (VALUES", " FROM conversation_events e CROSS JOIN LATERAL (VALUES", 1
    )
    if context.is_offline_mode():
        op.execute(sessions)
        op.execute(events)
    else:
        _build(sessions, events + " AND e.id > {low} AND e.id <= {high}")


def _downgrade_postgresql() -> None:
    op.execute("DROP TRIGGER agentstore_search_sessions_change ON sessions")
    op.execute("DROP TRIGGER agentstore_search_events_delete ON conversation_events")
    op.execute("DROP TRIGGER agentstore_search_events_update ON conversation_events")
    op.execute("DROP TRIGGER agentstore_search_events_insert ON conversation_events")
    op.execute("DROP FUNCTION agentstore_search_sessions_changed()")
    op.execute("DROP FUNCTION agentstore_search_events_changed()")
    op.execute("DROP FUNCTION agentstore_search_events_inserted()")
    op.execute("DROP TABLE agentstore_search")
    op.execute("DROP FUNCTION agentstore_document(text)")
    op.execute("DROP FUNCTION agentstore_words(text)")


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _upgrade_sqlite()
    else:
        _upgrade_postgresql()


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _downgrade_sqlite()
    else:
        _downgrade_postgresql()
