"""Full-text search over sessions and everything said and done in them (SPEC §9).

The index (revision 0005) is kept by triggers, so it follows every write, whoever made it:
appends single, batched or in a transaction, title and summary updates, deletes and prunes
— and, on a shared SQLite file, hld's own writes.

Query language: words, all of which must match; ``"a quoted phrase"``; ``prefix*``. Every
other character is literal: the query is cut into words of Unicode letters and digits (as
the index is) and each term is handed to the engine as a quoted phrase — on SQLite an FTS4
phrase, on PostgreSQL ``phraseto_tsquery`` of a bound parameter — so no input is a syntax
error and none reaches SQL unparameterised. At most 16 terms of 16 words each are used.

Ranking: BM25 over the matched field (computed from FTS4's ``matchinfo`` on SQLite),
``ts_rank`` on PostgreSQL; ties newest first (on SQLite: the most recently stored row first,
rows being numbered as they are stored — reading each match's time would double the cost
of a query). Snippets are cut from the stored text around the first match, the matched
words in ``[`` and ``]``, the same way on both backends.
"""

from __future__ import annotations

import math
import re
import struct
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

from agentstore.db import Conn
from agentstore.errors import InvalidValueError
from agentstore.repos._base import Database
from agentstore.types import codec, read_timestamp
from agentstore.validation import check_text, require_int, require_str

__all__ = ["SearchHit", "SearchRepo", "bm25", "parse_query", "snippet"]

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 200
MAX_TERMS: Final = 16
MAX_WORDS: Final = 16
MAX_WORD_LENGTH: Final = 64

_WORD: Final = re.compile(r"[^\W_]+")
_TERM: Final = re.compile(r'"([^"]*)"?|([^\s"]+)')

# The code in each indexed row's id (revision 0005): what the row is, and which field.
FIELDS: Final = ("title", "summary", "query", "content", "tool_input", "tool_result")


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One match: a session's title, summary or query, or an event's content, tool input or
    tool result. ``event_id``/``sequence`` are None for a hit on the session itself."""

    session_id: str
    claude_session_id: str
    event_id: int | None
    sequence: int | None
    field: str
    snippet: str
    created_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the time as ISO 8601 UTC text)."""
        return {
            "session_id": self.session_id,
            "claude_session_id": self.claude_session_id,
            "event_id": self.event_id,
            "sequence": self.sequence,
            "field": self.field,
            "snippet": self.snippet,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Term:
    """A query term: its words (one for a plain word), the last a prefix or not."""

    words: tuple[str, ...]
    prefix: bool = False


def parse_query(text: str) -> list[Term]:
    """The terms of a query; ``[]`` if it holds no word at all."""
    terms: list[Term] = []
    for match in _TERM.finditer(text.replace("\x00", " ")):
        quoted, bare = match.group(1), match.group(2)
        source = quoted if quoted is not None else bare
        words = tuple(word[:MAX_WORD_LENGTH] for word in _WORD.findall(source))[:MAX_WORDS]
        if not words:
            continue
        prefix = quoted is None and bare.endswith("*") and len(words) == 1
        terms.append(Term(words, prefix))
        if len(terms) == MAX_TERMS:
            break
    return terms


def fold(word: str) -> str:
    """A word as the index compares it: lower case, without accents."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def snippet(text: str, terms: list[Term], width: int = 24) -> str:
    """About ``width`` words of ``text`` around its first match, matches in ``[`` ``]``."""
    spans = [(m.start(), m.end(), fold(m.group())) for m in _WORD.finditer(text)]
    marked = [False] * len(spans)
    for term in terms:
        wanted = [fold(word) for word in term.words]
        size = len(wanted)
        for i in range(len(spans) - size + 1):
            last = spans[i + size - 1][2]
            if all(spans[i + k][2] == wanted[k] for k in range(size - 1)) and (
                last.startswith(wanted[-1]) if term.prefix else last == wanted[-1]
            ):
                for k in range(size):
                    marked[i + k] = True
    if not spans:
        return text[:200]
    first = next((i for i, hit in enumerate(marked) if hit), 0)
    start = max(0, first - width // 3)
    end = min(len(spans), start + width)
    out = ["…"] if start > 0 else []
    position = spans[start][0] if start > 0 else 0
    for i in range(start, end):
        begin, finish, _ = spans[i]
        out.append(text[position:begin])
        out.append(f"[{text[begin:finish]}]" if marked[i] else text[begin:finish])
        position = finish
    out.append(text[position : spans[end][0]] if end < len(spans) else text[position:])
    if end < len(spans):
        out.append("…")
    return " ".join("".join(out).split())


_K1: Final = 1.2
_B: Final = 0.75


@cache
def _layout(size: int) -> struct.Struct:
    return struct.Struct(f"={size // 4}I")


@cache
def _idf(rows: int, documents: int) -> float:
    return math.log(1 + (rows - documents + 0.5) / (documents + 0.5))


def bm25(matchinfo: bytes) -> float:
    """BM25 of a row of the FTS4 index from its ``matchinfo(…, 'pcnalx')`` (higher is
    better; the body is column 0). Registered on the store's SQLite connections: called
    for every matching row, so it is kept small."""
    values = _layout(len(matchinfo)).unpack(matchinfo)
    phrases, columns = values[0], values[1]
    # Length normalisation of the body: 1 - b + b * length / average length.
    norm = _K1 * (1 - _B + _B * values[3 + columns] / (values[3] or 1))
    at = 3 + 2 * columns
    step = 3 * columns
    score = 0.0
    for _ in range(phrases):
        frequency = values[at]
        if frequency:
            score += _idf(values[2], values[at + 2]) * frequency * (_K1 + 1) / (frequency + norm)
        at += step
    return score


# --- the engines ------------------------------------------------------------------------------


def _match_sqlite(terms: list[Term]) -> str:
    # Each term an FTS4 phrase of its words (quotes cannot occur in a word); a prefix's
    # word ends in '*'. Space between phrases: all must match.
    return " ".join('"' + " ".join(term.words) + ('*"' if term.prefix else '"') for term in terms)


_SQLITE_SEARCH: Final = (
    "SELECT docid, agentstore_bm25(matchinfo(agentstore_search, 'pcnalx')) AS rank "
    "FROM agentstore_search WHERE agentstore_search MATCH ? {session} "
    "ORDER BY rank DESC, docid DESC LIMIT ? OFFSET ?"
)


@cache
def _in(count: int) -> str:
    return ", ".join("?" * count)


def _tsquery(terms: list[Term]) -> tuple[str, list[str]]:
    """The tsquery SQL for the terms, each word list a bound parameter."""
    parts: list[str] = []
    values: list[str] = []
    for term in terms:
        words = list(term.words)
        last = words.pop() if term.prefix else None
        part = None
        if words:
            values.append(" ".join(words))
            part = f"phraseto_tsquery('simple', agentstore_words(${len(values)}))"
        if last is not None:
            # One word of letters and digits: safe inside to_tsquery's own syntax.
            values.append(last)
            prefix = f"to_tsquery('simple', trim(agentstore_words(${len(values)})) || ':*')"
            part = prefix if part is None else f"tsquery_phrase({part}, {prefix})"
        assert part is not None
        parts.append(f"({part})")
    return " && ".join(parts), values


class SearchRepo:
    """Search the index."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(
        self,
        query: str,
        *,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        session_id: str | None = None,
    ) -> list[SearchHit]:
        """Matches of ``query``, best first (ties: newest first); ``[]`` if none.

        ``limit`` <= 0 means 20, and at most 200 are returned; ``session_id`` keeps the
        hits of one session. See the module for the query language.
        """
        if not isinstance(query, str):
            raise InvalidValueError(f"query must be str, got {type(query).__name__}")
        # A NUL is one more character that is not a letter or a digit: it separates words.
        text = check_text(query.replace("\x00", " "), "query")
        limit = require_int(limit, "limit")
        limit = DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
        offset = require_int(offset, "offset", minimum=0)
        if session_id is not None:
            session_id = require_str(session_id, "session_id")
        terms = parse_query(text)
        if not terms:
            return []
        dialect = self._db.dialect

        async def unit(conn: Conn) -> list[SearchHit]:
            if dialect == "sqlite":
                return await _search_sqlite(conn, terms, limit, offset, session_id)
            return await _search_postgresql(conn, terms, limit, offset, session_id)

        # SQLite reads the page, then its rows, in one snapshot; PostgreSQL in one statement.
        return await self._db.read(unit, snapshot=dialect == "sqlite")


async def _search_sqlite(
    conn: Conn, terms: list[Term], limit: int, offset: int, session_id: str | None
) -> list[SearchHit]:
    args: list[Any] = [_match_sqlite(terms)]
    if session_id is not None:
        args.append(session_id)
    sql = _SQLITE_SEARCH.format(session="AND session_id = ?" if session_id is not None else "")
    ranked = await conn.raw_rows(sql, [*args, limit, offset])
    if not ranked:
        return []
    events = [docid // 8 for docid, _ in ranked if docid % 8 >= 3]
    sessions = [docid // 8 for docid, _ in ranked if docid % 8 < 3]
    found_events = {
        row[0]: row
        for row in (
            await conn.raw_rows(
                # Placeholders only are put into this SQL.
                "SELECT id, session_id, claude_session_id, sequence, created_at, content, "  # noqa: S608
                f"tool_input_json, tool_result_content FROM conversation_events "
                f"WHERE id IN ({_in(len(events))})",
                events,
            )
            if events
            else []
        )
    }
    found_sessions = {
        row[0]: row
        for row in (
            await conn.raw_rows(
                "SELECT rowid, id, claude_session_id, created_at, title, summary, query "  # noqa: S608
                f"FROM sessions WHERE rowid IN ({_in(len(sessions))})",
                sessions,
            )
            if sessions
            else []
        )
    }
    hits = []
    for docid, _ in ranked:
        key, code = divmod(docid, 8)
        if code >= 3:
            row = found_events.get(key)
            if row is None:
                continue
            body = row[5 + code - 3] or ""
            hits.append(
                SearchHit(
                    session_id=row[1],
                    claude_session_id=row[2] or "",
                    event_id=int(row[0]),
                    sequence=int(row[3]),
                    field=FIELDS[code],
                    snippet=snippet(body, terms),
                    created_at=read_timestamp(row[4]),
                )
            )
        else:
            row = found_sessions.get(key)
            if row is None:
                continue
            body = row[4 + code] or ""
            hits.append(
                SearchHit(
                    session_id=row[1],
                    claude_session_id=row[2] or "",
                    event_id=None,
                    sequence=None,
                    field=FIELDS[code],
                    snippet=snippet(body, terms),
                    created_at=read_timestamp(row[3]),
                )
            )
    return hits


async def _search_postgresql(
    conn: Conn, terms: list[Term], limit: int, offset: int, session_id: str | None
) -> list[SearchHit]:
    # One statement, one round trip: the ranked page, then each hit's row.
    tsquery, values = _tsquery(terms)
    args: list[Any] = list(values)
    session = ""
    if session_id is not None:
        args.append(session_id)
        session = f"AND s.session_id = ${len(args)}"
    args += [limit, offset]
    rows = await conn.raw_rows(
        # The query's terms are bound parameters; only their placeholders are put in the SQL.
        "WITH ranked AS (SELECT s.event_id, s.session_id, s.field, s.created_at, "  # noqa: S608
        "ts_rank(s.document, q.q) AS rank "
        f"FROM agentstore_search s, (SELECT {tsquery} AS q) AS q "
        f"WHERE s.document @@ q.q {session} "
        "ORDER BY rank DESC, s.created_at DESC NULLS LAST, s.event_id DESC NULLS LAST, s.field "
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}) "
        "SELECT r.event_id, r.session_id, r.field, e.claude_session_id, e.sequence, "
        "e.created_at, e.content, e.tool_input_json, e.tool_result_content, "
        "x.claude_session_id, x.created_at, x.title, x.summary, x.query "
        "FROM ranked r "
        "LEFT JOIN conversation_events e ON e.id = r.event_id "
        "LEFT JOIN sessions x ON r.event_id IS NULL AND x.id = r.session_id "
        "ORDER BY r.rank DESC, r.created_at DESC NULLS LAST, r.event_id DESC NULLS LAST, r.field",
        args,
    )
    decode = codec_utc()
    hits = []
    for row in rows:
        event_id, owner, code = row[0], row[1], row[2]
        if event_id is not None:
            if row[4] is None:  # deleted meanwhile
                continue
            hits.append(
                SearchHit(
                    session_id=owner,
                    claude_session_id=row[3] or "",
                    event_id=int(event_id),
                    sequence=int(row[4]),
                    field=FIELDS[code],
                    snippet=snippet(row[6 + code - 3] or "", terms),
                    created_at=decode(row[5]),
                )
            )
        elif row[10] is not None:
            hits.append(
                SearchHit(
                    session_id=owner,
                    claude_session_id=row[9] or "",
                    event_id=None,
                    sequence=None,
                    field=FIELDS[code],
                    snippet=snippet(row[11 + code] or "", terms),
                    created_at=decode(row[10]),
                )
            )
    return hits


@cache
def codec_utc() -> Any:
    """PostgreSQL's timestamptz decoder (aware UTC datetimes)."""
    from agentstore.models import ConversationEvent

    decode = codec(ConversationEvent.__table__.columns["created_at"].type, "postgresql").decode
    assert decode is not None
    return decode
