"""Full-text search over sessions and everything said and done in them (SPEC §9).

The index (revision 0005) is kept by triggers, so it follows every write, whoever made it:
appends single, batched or in a transaction, title and summary updates, deletes and prunes
— and, on a shared SQLite file, hld's own writes.

Words are what SQLite's FTS4 ``unicode61`` tokenizer (``remove_diacritics=2``) makes them,
on both backends and in snippets: see :mod:`agentstore.unicode61`. A word is found whatever
its case and its Latin accents, in composed or decomposed form (``école``, ``ECOLE`` and
``e\u0301cole`` are one word).

Query language: words, all of which must match; ``"a quoted phrase"``; ``prefix*`` (on a
bare term of several words, such as ``file_na*``, the last word is the prefix). Every other
character is literal: the query is cut into words as the index is, and each term is handed
to the engine as a phrase of its words — an FTS4 phrase on SQLite, a tsquery literal bound
as a parameter on PostgreSQL — so no input is a syntax error and none reaches SQL
unparameterised. A query may have up to 1,000 different terms (a phrase any number of
words): a longer one is refused (InvalidValueError) rather than cut, which would find texts
missing some of its words.

Ranking: BM25 over the matched field (computed from FTS4's ``matchinfo`` on SQLite),
``ts_rank`` divided by 1 + the logarithm of the field's length on PostgreSQL, so that one
mention in a short text ranks above one in a long text. Ties: newest first — on PostgreSQL
by the row's time, on SQLite by the most recently stored row (rows are numbered as they
are stored; reading each match's time would double the cost of a query). Snippets are cut
from the stored text around the first match, the matched words in ``[`` and ``]``, the same
way on both backends; a word or gap longer than 48 or 16 characters is shortened with
``…``.

Limits of PostgreSQL's index (none on SQLite): a word is indexed by its first 256
characters, a field by the words of its first 250,000 characters, and positions past the
16,383rd word all count as the last, so a phrase is matched exactly only before it.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

from agentstore.db import Conn
from agentstore.errors import InvalidValueError
from agentstore.repos._base import Database
from agentstore.types import codec, read_timestamp
from agentstore.unicode61 import WORD, fold, pg_lexeme
from agentstore.validation import check_text, require_int, require_str

__all__ = ["SearchHit", "SearchRepo", "bm25", "parse_query", "snippet"]

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 200
MAX_TERMS: Final = 1000
SHOWN_WORD: Final = 48
SHOWN_GAP: Final = 16

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
    """The terms of a query, each once; ``[]`` if it holds no word at all.
    InvalidValueError if it has more than 1,000 different terms."""
    terms: dict[Term, None] = {}
    for match in _TERM.finditer(text):
        quoted, bare = match.group(1), match.group(2)
        source = quoted if quoted is not None else bare
        words = tuple(WORD.findall(source))
        if not words:
            continue
        terms[Term(words, quoted is None and bare.endswith("*"))] = None
    if len(terms) > MAX_TERMS:
        # SQLite's FTS4 refuses a query tree deeper than 12 (about 4,000 terms); a longer
        # query is refused whole on both backends rather than cut.
        raise InvalidValueError(
            f"a query may have at most {MAX_TERMS} different terms; this one has {len(terms)}"
        )
    return list(terms)


def _shown(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _gap(text: str) -> str:
    # Both ends of a long gap: the spaces that separate it from its words stay.
    half = SHOWN_GAP // 2
    return text if len(text) <= SHOWN_GAP else text[:half] + "…" + text[-half:]


def snippet(text: str, terms: list[Term], width: int = 24) -> str:
    """About ``width`` words of ``text`` around its first match, matches in ``[`` ``]``.

    Words are read only as far as the excerpt needs: the cost does not grow with the part
    of a long text after it."""
    wanted = [([fold(word) for word in term.words], term.prefix) for term in terms]
    longest = max((len(words) for words, _ in wanted), default=1)
    spans: list[tuple[int, int, str]] = []
    marked: set[int] = set()
    first: int | None = None
    stop: int | None = None
    for match in WORD.finditer(text):
        spans.append((match.start(), match.end(), fold(match.group())))
        last = len(spans) - 1
        # Terms that end at this word.
        for words, prefix in wanted:
            size = len(words)
            begin = last - size + 1
            if begin < 0:
                continue
            tail = spans[last][2]
            if (tail.startswith(words[-1]) if prefix else tail == words[-1]) and all(
                spans[begin + k][2] == words[k] for k in range(size - 1)
            ):
                marked.update(range(begin, last + 1))
                if first is None:
                    first = begin
                    stop = max(0, first - width // 3) + width + longest
        if stop is not None and len(spans) >= stop:
            break
    if not spans:
        return _shown(" ".join(text.split()), 200)
    start = max(0, (first or 0) - width // 3)
    end = min(len(spans), start + width)
    out = ["…"] if start > 0 else []
    position = spans[start][0] if start > 0 else 0
    for i in range(start, end):
        begin, finish, _ = spans[i]
        out.append(_gap(text[position:begin]))
        word = _shown(text[begin:finish], SHOWN_WORD)
        out.append(f"[{word}]" if i in marked else word)
        position = finish
    more = end < len(spans) or WORD.search(text, position) is not None
    out.append(_gap(text[position : spans[end][0]] if end < len(spans) else text[position:]))
    if more:
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


def _tsquery(terms: list[Term]) -> str:
    """The terms as a tsquery literal, bound as one parameter: each word folded as
    ``agentstore_words`` folds the index's (so no text search parser cuts it again)."""
    parts = []
    for term in terms:
        lexemes = [pg_lexeme(word) for word in term.words]
        if term.prefix:
            lexemes[-1] += ":*"
        parts.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)


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
    args: list[Any] = [_tsquery(terms)]
    session = ""
    if session_id is not None:
        args.append(session_id)
        session = f"AND s.session_id = ${len(args)}"
    args += [limit, offset]
    rows = await conn.raw_rows(
        # The query's terms are bound parameters; only their placeholders are put in the SQL.
        "WITH ranked AS (SELECT s.event_id, s.session_id, s.field, s.created_at, "  # noqa: S608
        "ts_rank(s.document, $1::tsquery, 1) AS rank "
        f"FROM agentstore_search s WHERE s.document @@ $1::tsquery {session} "
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
