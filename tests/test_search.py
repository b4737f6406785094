"""Full-text search (SPEC §9): the query language, ranking, snippets, hostile input, the index
following every write, an adopted hld file, a file hld's own Go store keeps writing, and the
``agentstore search`` command.

Tests taking ``store`` run on an SQLite file and on a fresh PostgreSQL database; the
cross-backend comparisons take ``postgres_url`` (PostgreSQL only) and open an SQLite file
beside it; the hld-file and CLI tests are SQLite only.

What the tokenizers do, checked here on both backends alike: words are what SQLite's FTS4
``unicode61`` tokenizer makes them (``_``, ``-``, ``.``, ``/`` and every other ASCII
character but letters and digits separate them), compared without case and without the
accents of Latin letters, composed or not (``école`` = ``ECOLE`` = ``ecole`` =
``e\u0301cole``, ``Việt`` = ``viet``); Greek and Cyrillic fold case but keep their accents.
Letters that are not an accented form (``ł``, ``ø``, ``đ``, ``ß``) and compatibility forms
(``ﬁ``) are not folded. A run of CJK, kana or Hangul is one word: ``東京`` finds ``東京`` but
``東`` does not find it (no word segmentation on either backend). Python's and PostgreSQL's
copies of the tokenizer are checked against SQLite's for every code point.

Where the backends differ by design, the test says so: ties on SQLite are broken by storage
order (newest stored first), on PostgreSQL by time.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import unicodedata
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agentstore import (
    ConversationEvent,
    EventType,
    InvalidValueError,
    SearchHit,
    Session,
    SessionUpdate,
    Store,
)

REPO = Path(__file__).resolve().parent.parent
HLD_GO_STORE = REPO.parent / "shared" / "tools" / "hld-go-store"
CLI = Path(sys.executable).parent / "agentstore"

T0 = datetime(2025, 10, 21, 16, 0, tzinfo=UTC)

AUTH, AUTH_C = "sess-auth", "claude-auth"
BILLING, BILLING_C = "sess-billing", "claude-billing"
ECOLE, ECOLE_C = "sess-ecole", "claude-ecole"

Key = tuple[str, int | None, str]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    session_id: str, claude_session_id: str, kind: EventType, when: datetime, **fields: Any
) -> ConversationEvent:
    return ConversationEvent(
        session_id=session_id,
        claude_session_id=claude_session_id,
        event_type=kind,
        created_at=when,
        **fields,
    )


def keys(hits: Iterable[SearchHit]) -> set[Key]:
    """What a hit is: (session, sequence — None on the session itself —, field)."""
    return {(h.session_id, h.sequence, h.field) for h in hits}


def key_list(hits: Iterable[SearchHit]) -> list[Key]:
    return [(h.session_id, h.sequence, h.field) for h in hits]


async def build_corpus(store: Store) -> None:
    """Three sessions, written through the public API the way a daemon writes them:
    messages, thinking, tool calls with JSON inputs and their results (each added later than
    its call, as its own event)."""
    await store.create_session(
        Session(
            id=AUTH,
            run_id="run-auth",
            claude_session_id=AUTH_C,
            title="Refresh token rotation",
            query="Add refresh-token rotation to the auth middleware",
            summary="Rotating refresh tokens in the auth middleware",
            created_at=at(0),
        )
    )
    await store.create_session(
        Session(
            id=BILLING,
            run_id="run-billing",
            claude_session_id=BILLING_C,
            title="Billing webhook refactor",
            query="Refactor the billing webhook handler so that retries are idempotent",
            created_at=at(100),
        )
    )
    await store.create_session(
        Session(
            id=ECOLE,
            run_id="run-ecole",
            claude_session_id=ECOLE_C,
            title="Traduction de l'ÉCOLE",
            query="Traduire la page d'accueil de l'école en français",
            summary="Page de l'Ecole traduite",
            created_at=at(200),
        )
    )
    auth = [
        ev(
            AUTH,
            AUTH_C,
            EventType.MESSAGE,
            at(1),
            role="user",
            content="Add refresh-token rotation to the auth middleware and keep the "
            "existing tests passing.",
        ),
        ev(
            AUTH,
            AUTH_C,
            EventType.THINKING,
            at(2),
            role="assistant",
            content="Rotation means issuing a new refresh token on every use; the old token "
            "must be revoked.",
        ),
        ev(
            AUTH,
            AUTH_C,
            EventType.TOOL_CALL,
            at(3),
            tool_id="toolu_read",
            tool_name="Read",
            tool_input_json='{"file_path":"/src/server/auth/middleware.ts"}',
        ),
        ev(
            AUTH,
            AUTH_C,
            EventType.TOOL_RESULT,
            at(4),
            role="user",
            tool_result_for_id="toolu_read",
            tool_result_content="import { Request } from 'express';\n"
            "const refreshToken = req.cookies.rt;",
        ),
        ev(
            AUTH,
            AUTH_C,
            EventType.TOOL_CALL,
            at(5),
            tool_id="toolu_bash",
            tool_name="Bash",
            tool_input_json=json.dumps(
                {"command": "npm test -- --grep rotation", "description": "Run the rotation tests"}
            ),
        ),
        ev(
            AUTH,
            AUTH_C,
            EventType.TOOL_RESULT,
            at(6),
            role="user",
            tool_result_for_id="toolu_bash",
            tool_result_content="PASS tests/rotation.test.ts\n  ✓ rejects a reused token (12 ms)",
        ),
        ev(
            AUTH,
            AUTH_C,
            EventType.MESSAGE,
            at(7),
            role="assistant",
            content="When the token expired, refresh the page: rotation works and the tests "
            "are green.",
        ),
    ]
    for event in auth:  # one at a time
        await store.add_conversation_event(event)
    await store.add_conversation_events(  # a batch
        [
            ev(
                BILLING,
                BILLING_C,
                EventType.MESSAGE,
                at(101),
                role="user",
                content="Refactor the billing webhook handler so that retries are idempotent",
            ),
            ev(
                BILLING,
                BILLING_C,
                EventType.TOOL_CALL,
                at(102),
                tool_id="toolu_grep",
                tool_name="Grep",
                tool_input_json='{"path":"/src/billing","pattern":"handleWebhook"}',
            ),
            ev(
                BILLING,
                BILLING_C,
                EventType.TOOL_RESULT,
                at(103),
                role="user",
                tool_result_for_id="toolu_grep",
                tool_result_content="src/billing/webhook.ts:12: export async function "
                "handleWebhook(req) {",
            ),
            ev(
                BILLING,
                BILLING_C,
                EventType.MESSAGE,
                at(104),
                role="assistant",
                content="The webhook handler now stores the event id; a retry is a no-op.",
            ),
        ]
    )
    await store.add_conversation_events(
        [
            ev(
                ECOLE,
                ECOLE_C,
                EventType.MESSAGE,
                at(201),
                role="user",
                content="La page de l'école est traduite; le café est fermé.",
            ),
            ev(
                ECOLE,
                ECOLE_C,
                EventType.TOOL_CALL,
                at(202),
                tool_id="toolu_write",
                tool_name="Write",
                tool_input_json=json.dumps(
                    {"content": "<h1>École</h1>", "file_path": "/site/ecole.html"},
                    ensure_ascii=False,
                ),
            ),
            ev(
                ECOLE,
                ECOLE_C,
                EventType.MESSAGE,
                at(203),
                role="assistant",
                content="東京 タワー — Привет, мир! Ωμέγα",
            ),
        ]
    )


# What each query must find in the corpus, worked out by hand from the texts above.
ECOLE_HITS: set[Key] = {
    (ECOLE, None, "title"),  # ÉCOLE
    (ECOLE, None, "query"),  # école
    (ECOLE, None, "summary"),  # Ecole
    (ECOLE, 1, "content"),  # école
    (ECOLE, 2, "tool_input"),  # École, ecole.html
}
EXPECTED: dict[str, set[Key]] = {
    # words: every one must occur, as a whole word, in the same field
    "webhook": {
        (BILLING, None, "title"),
        (BILLING, None, "query"),
        (BILLING, 1, "content"),
        (BILLING, 3, "tool_result"),  # webhook.ts; "handleWebhook" is another word
        (BILLING, 4, "content"),
    },
    "webhook retry": {(BILLING, 4, "content")},  # the query says "retries"
    "WEBHOOK idempotent": {(BILLING, None, "query"), (BILLING, 1, "content")},
    "handlewebhook": {(BILLING, 2, "tool_input"), (BILLING, 3, "tool_result")},
    "rotation": {
        (AUTH, None, "title"),
        (AUTH, None, "query"),
        (AUTH, 1, "content"),
        (AUTH, 2, "content"),
        (AUTH, 5, "tool_input"),
        (AUTH, 6, "tool_result"),
        (AUTH, 7, "content"),
    },
    "rotation middleware": {(AUTH, None, "query"), (AUTH, 1, "content")},
    # phrases against the same words unquoted
    '"refresh token"': {
        (AUTH, None, "title"),
        (AUTH, None, "query"),  # refresh-token
        (AUTH, 1, "content"),
        (AUTH, 2, "content"),
    },
    "refresh token": {
        (AUTH, None, "title"),
        (AUTH, None, "query"),
        (AUTH, 1, "content"),
        (AUTH, 2, "content"),
        (AUTH, 7, "content"),  # "the token expired, refresh the page": not the phrase
    },
    '"token refresh"': set(),
    '"the old token" revoked': {(AUTH, 2, "content")},
    # prefixes
    "idempot*": {(BILLING, None, "query"), (BILLING, 1, "content")},
    "rotat*": {
        (AUTH, None, "title"),
        (AUTH, None, "query"),
        (AUTH, None, "summary"),  # Rotating
        (AUTH, 1, "content"),
        (AUTH, 2, "content"),
        (AUTH, 5, "tool_input"),
        (AUTH, 6, "tool_result"),
        (AUTH, 7, "content"),
    },
    "otation*": set(),  # a prefix matches the start of a word only
    "rotat": set(),  # without the star, a whole word
    "rotat* revok*": {(AUTH, 2, "content")},
    # case and accents, both ways
    "ecole": ECOLE_HITS,
    "école": ECOLE_HITS,
    "ÉCOLE": ECOLE_HITS,
    "Ecole": ECOLE_HITS,
    "écol*": ECOLE_HITS,
    "ECOL*": ECOLE_HITS,
    "cafe": {(ECOLE, 1, "content")},
    "CAFÉ FERME": {(ECOLE, 1, "content")},
    "francais": {(ECOLE, None, "query")},
    # other scripts
    "東京": {(ECOLE, 3, "content")},
    "タワー": {(ECOLE, 3, "content")},
    "東": set(),  # CJK is not segmented: 東京 is one word
    "ПРИВЕТ мир": {(ECOLE, 3, "content")},
    "ΩΜΈΓΑ": {(ECOLE, 3, "content")},
    # punctuation inside a bare term: its words as a phrase
    "refresh-token": {
        (AUTH, None, "title"),
        (AUTH, None, "query"),
        (AUTH, 1, "content"),
        (AUTH, 2, "content"),
    },
    "webhook.ts": {(BILLING, 3, "tool_result")},
    # nothing at all
    "nonexistentword": set(),
    "webhook rotation": set(),  # in different sessions, never in one field
}


# --- the query language, on each backend --------------------------------------------------------


@pytest.mark.parametrize("query", list(EXPECTED))
async def test_query_finds_exactly_the_fields_that_match(store: Store, query: str) -> None:
    await build_corpus(store)
    hits = await store.search(query, limit=200)
    assert keys(hits) == EXPECTED[query]
    assert len(hits) == len(keys(hits))  # no field twice


async def test_hits_carry_the_rows_identity_and_time(store: Store) -> None:
    await build_corpus(store)
    conversation = {e.sequence: e for e in await store.get_conversation(BILLING_C)}
    hits = {h.field if h.event_id is None else h.sequence: h for h in await store.search("webhook")}
    title = hits["title"]
    assert (title.session_id, title.claude_session_id) == (BILLING, BILLING_C)
    assert (title.event_id, title.sequence) == (None, None)
    assert title.created_at == at(100)
    for sequence in (1, 3, 4):
        hit = hits[sequence]
        assert hit.event_id == conversation[sequence].id
        assert hit.claude_session_id == BILLING_C
        assert hit.created_at == at(100 + sequence)
        assert hit.created_at is not None and hit.created_at.utcoffset() == timedelta(0)
    assert hits[3].field == "tool_result"


async def test_no_query_words_no_hits(store: Store) -> None:
    await build_corpus(store)
    for query in ("", "   ", "\t\n", "*", "**", '"', '""', '" "', "!?", "—", "_"):
        assert await store.search(query) == [], query


# --- ranking ----------------------------------------------------------------------------------


async def test_more_occurrences_rank_above_one_in_a_long_text(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    filler = " ".join(f"filler{i}" for i in range(300))
    texts = [
        "zeppelin zeppelin zeppelin over the hangar",  # oldest, stored first
        f"{filler} zeppelin {filler}",  # newest: newest-first alone would put it first
        "nothing to see",
    ]
    for i, text in enumerate(texts):
        await store.add_conversation_event(ev("s1", "c1", EventType.MESSAGE, at(i), content=text))
    hits = await store.search("zeppelin")
    assert [h.sequence for h in hits] == [1, 2]


async def test_a_short_text_ranks_above_a_long_one_with_the_same_match(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    filler = " ".join(f"filler{i}" for i in range(300))
    for i, text in enumerate(["one zeppelin here", f"{filler} zeppelin {filler}"]):
        await store.add_conversation_event(ev("s1", "c1", EventType.MESSAGE, at(i), content=text))
    assert [h.sequence for h in await store.search("zeppelin")] == [1, 2]


async def test_ties_in_storage_order_newest_first(store: Store) -> None:
    # Identical texts score the same: the newer comes first (stored last, created last).
    for i, name in enumerate(("first", "second", "third")):
        await store.create_session(
            Session(
                id=name,
                run_id=f"r-{name}",
                claude_session_id=f"c-{name}",
                title="Nightly audit",
                created_at=at(i),
            )
        )
        await store.add_conversation_event(
            ev(name, f"c-{name}", EventType.MESSAGE, at(i), content="identical marmot text")
        )
    assert [h.session_id for h in await store.search("nightly audit")] == [
        "third",
        "second",
        "first",
    ]
    assert [h.session_id for h in await store.search("identical marmot")] == [
        "third",
        "second",
        "first",
    ]


async def test_ties_by_time_on_postgresql_by_storage_order_on_sqlite(
    store: Store, agentstore_backend: str
) -> None:
    # SQLite breaks ties by the row's number in the index (the most recently stored row
    # first): reading every match's time would double a query's cost. PostgreSQL keeps
    # each row's time in its index and breaks them by time.
    # The newer of each pair is stored first (smaller id / rowid), its time given at
    # another UTC offset.
    later_local = datetime(2025, 11, 3, 9, 0, tzinfo=timezone(timedelta(hours=-8)))  # 17:00Z
    earlier_utc = datetime(2025, 11, 3, 16, 30, tzinfo=UTC)
    for name, when in (("newer", later_local), ("older", earlier_utc)):
        await store.create_session(
            Session(
                id=name,
                run_id=f"r-{name}",
                claude_session_id=f"c-{name}",
                title="Nightly audit",
                created_at=when,
            )
        )
        await store.add_conversation_event(
            ev(name, f"c-{name}", EventType.MESSAGE, when, content="identical marmot text")
        )
    # One batch whose times are not in the order of its rows.
    minutes = [5, 1, 9, 3]
    await store.add_conversation_events(
        [ev("older", "c-older", EventType.MESSAGE, at(m), content="batch walrus") for m in minutes]
    )
    titles = await store.search("nightly audit")
    events = await store.search("identical marmot")
    batch = await store.search("batch walrus")
    assert {h.created_at for h in titles} == {later_local, earlier_utc}
    if agentstore_backend == "postgresql":
        assert [h.session_id for h in titles] == ["newer", "older"]
        assert titles[0].created_at == later_local
        assert [h.session_id for h in events] == ["newer", "older"]
        assert [h.created_at for h in batch] == [at(9), at(5), at(3), at(1)]
    else:
        assert [h.session_id for h in titles] == ["older", "newer"]
        assert [h.session_id for h in events] == ["older", "newer"]
        assert [h.created_at for h in batch] == [at(m) for m in reversed(minutes)]


# --- snippets ---------------------------------------------------------------------------------


async def test_snippets_mark_the_matched_words(store: Store) -> None:
    await build_corpus(store)

    async def snippets(query: str) -> dict[Key, str]:
        return {(h.session_id, h.sequence, h.field): h.snippet for h in await store.search(query)}

    ecole = await snippets("ecole")
    assert ecole[(ECOLE, None, "title")] == "Traduction de l'[ÉCOLE]"  # the stored case
    assert ecole[(ECOLE, 1, "content")] == "La page de l'[école] est traduite; le café est fermé."
    assert "[École]" in ecole[(ECOLE, 2, "tool_input")]
    assert "[ecole].html" in ecole[(ECOLE, 2, "tool_input")]
    both = await snippets("webhook retry")
    assert both[(BILLING, 4, "content")] == (
        "The [webhook] handler now stores the event id; a [retry] is a no-op."
    )
    phrase = await snippets('"refresh token"')
    assert phrase[(AUTH, None, "title")] == "[Refresh] [token] rotation"
    assert phrase[(AUTH, None, "query")] == "Add [refresh]-[token] rotation to the auth middleware"
    # The thinking text holds "refresh token" once and "token" once more, alone: the phrase
    # is marked, the lone word is not.
    assert phrase[(AUTH, 2, "content")] == (
        "Rotation means issuing a new [refresh] [token] on every use; the old token must be "
        "revoked."
    )
    prefix = await snippets("idempot*")
    assert prefix[(BILLING, None, "query")].endswith("retries are [idempotent]")
    tool = await snippets("handlewebhook")
    assert tool[(BILLING, 2, "tool_input")] == '{"path":"/src/billing","pattern":"[handleWebhook]"}'
    cjk = await snippets("東京")
    assert cjk[(ECOLE, 3, "content")].startswith("[東京] タワー")


async def test_snippets_of_long_texts_are_short_excerpts_around_the_match(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    words = [f"word{i}" for i in range(2000)]
    middle = " ".join([*words[:1000], "needle", *words[1000:]])
    end = " ".join([*words, "needle"])
    start = " ".join(["needle", *words])
    for i, text in enumerate((middle, end, start)):
        await store.add_conversation_event(
            ev("s1", "c1", EventType.TOOL_RESULT, at(i), tool_result_content=text)
        )
    hits = {h.sequence: h.snippet for h in await store.search("needle")}
    assert set(hits) == {1, 2, 3}
    for snippet in hits.values():
        assert "[needle]" in snippet
        assert len(snippet) < 400
        assert len(snippet.split()) <= 30
    assert hits[1].startswith("…") and hits[1].endswith("…")
    assert "word999 [needle] word1000" in hits[1]
    assert hits[2].startswith("…") and hits[2].endswith("[needle]")
    assert hits[3].startswith("[needle] word0") and hits[3].endswith("…")


async def test_snippet_stays_short_next_to_a_huge_token(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    # Realistic tool results: minified code, a ==== ruler, a blob without separators.
    for i, text in enumerate(
        ("needle " + "A" * 50_000, "needle " + "=" * 50_000 + " tail", "x" * 50_000 + " needle")
    ):
        await store.add_conversation_event(
            ev("s1", "c1", EventType.TOOL_RESULT, at(i), tool_result_content=text)
        )
    hits = await store.search("needle")
    assert len(hits) == 3
    assert max(len(h.snippet) for h in hits) < 200
    assert {h.snippet for h in hits} == {
        "[needle] " + "A" * 48 + "…",
        "[needle] " + "=" * 7 + "…" + "=" * 7 + " tail",
        "x" * 48 + "… [needle]",
    }


# --- session filter, limit and paging ---------------------------------------------------------


async def test_session_filter(store: Store) -> None:
    await build_corpus(store)
    everywhere = await store.search("the", limit=200)
    assert {h.session_id for h in everywhere} == {AUTH, BILLING}
    only = await store.search("the", limit=200, session_id=BILLING)
    assert keys(only) == {k for k in keys(everywhere) if k[0] == BILLING}
    assert keys(only)  # not empty
    assert await store.search("rotation", session_id=BILLING) == []
    assert await store.search("rotation", session_id="no-such-session") == []
    assert keys(await store.search("rotation", session_id=AUTH, limit=200)) == EXPECTED["rotation"]


async def test_limit_and_offset_page_without_overlap(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    # 250 identical texts (every score ties) in one batch, stored in time order: newest
    # first is the reverse of the sequences.
    await store.add_conversation_events(
        [
            ev("s1", "c1", EventType.MESSAGE, at(m), content="pagination probe entry")
            for m in range(250)
        ]
    )
    expected: list[int | None] = list(range(250, 0, -1))

    async def sequences(**options: Any) -> list[int | None]:
        return [h.sequence for h in await store.search("pagination", **options)]

    assert await sequences() == expected[:20]
    assert await sequences(limit=0) == expected[:20]
    assert await sequences(limit=-5) == expected[:20]
    assert await sequences(limit=1) == expected[:1]
    assert await sequences(limit=200) == expected[:200]
    assert await sequences(limit=201) == expected[:200]
    assert await sequences(limit=10_000) == expected[:200]
    assert await sequences(limit=10, offset=245) == expected[245:]
    assert await sequences(limit=200, offset=200) == expected[200:]
    assert await sequences(offset=250) == []
    assert await sequences(offset=10**6) == []
    pages: list[int | None] = []
    offset = 0
    while page := await sequences(limit=7, offset=offset):
        assert len(page) <= 7
        pages += page
        offset += 7
    assert pages == expected
    with pytest.raises(InvalidValueError):
        await store.search("pagination", offset=-1)
    for bad in (None, "5", 2.5, True):
        with pytest.raises(InvalidValueError):
            await store.search("pagination", limit=bad)  # type: ignore[arg-type]


async def test_pages_of_ranked_hits_do_not_overlap(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    # Scores all different: k occurrences of the word among 40 - k others.
    texts = [" ".join(["heron"] * k + [f"w{j}" for j in range(40 - k)]) for k in range(1, 31)]
    random.Random(3).shuffle(texts)
    await store.add_conversation_events(
        [ev("s1", "c1", EventType.MESSAGE, at(i), content=t) for i, t in enumerate(texts)]
    )
    whole = await store.search("heron", limit=200)
    counts = [texts[h.sequence - 1].split().count("heron") for h in whole if h.sequence]
    assert counts == list(range(30, 0, -1))
    pages: list[SearchHit] = []
    for offset in range(0, 30, 4):
        pages += await store.search("heron", limit=4, offset=offset)
    assert [h.event_id for h in pages] == [h.event_id for h in whole]


# --- hostile queries --------------------------------------------------------------------------

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
HOSTILE = [
    '"',
    '""',
    '"unterminated',
    'unterminated"',
    "NEAR(a b)",
    "NEAR/3",
    "a NEAR b",
    "a OR b",
    "a AND b",
    "a NOT b",
    "a | b",
    "a & !b",
    "-x",
    "+x",
    "*",
    "a*b*",
    ":*",
    "col:val",
    "title:foo",
    "body:alpha",
    "session_id:s1",
    "{body created}: x",
    "\x00",
    "alpha\x00beta",
    "(",
    ")",
    "((a) OR (b)",
    "^",
    "^alpha",
    "'",
    "''",
    "\\",
    "%",
    "_",
    "$1",
    "?",
    ";DROP TABLE sessions;--",
    "'; DROP TABLE sessions; --",
    "alpha' OR '1'='1",
    "\u200b",
    "\ufeff",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "🎉",
    "alpha " * 1667,  # 10,000 characters of words
    (PUNCTUATION * 400)[:10_000],  # 10,000 characters of punctuation
    "x" * 10_000,  # one 10,000-character word
    '"' + "alpha " * 2000 + '"',  # a 12,000-character phrase
    " ".join(f"t{i}" for i in range(500)),  # 500 terms
    " ".join(f"t{i}*" for i in range(500)),  # 500 prefixes
]


async def build_alphabet(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    texts = [
        "alpha beta",  # 1
        "omega",  # 2
        "alpha or omega",  # 3
        "alpha not beta",  # 4
        " ".join(f"t{i}" for i in range(500)),  # 5
    ]
    for i, text in enumerate(texts):
        await store.add_conversation_event(ev("s1", "c1", EventType.MESSAGE, at(i), content=text))


async def test_hostile_queries_return_lists_and_print_nothing(
    store: Store, capfd: pytest.CaptureFixture[str]
) -> None:
    await build_alphabet(store)
    capfd.readouterr()
    for query in HOSTILE:
        hits = await store.search(query)
        assert isinstance(hits, list), repr(query[:40])
        assert all(isinstance(h, SearchHit) for h in hits)
        assert len(await store.search(query, session_id="s1", limit=3, offset=1)) <= 3
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert await store.get_session_count() == 1  # nothing was dropped
    assert await store.get_event_count() == 5


async def test_operators_and_syntax_are_literal(store: Store) -> None:
    await build_alphabet(store)

    async def found(query: str) -> set[int | None]:
        return {h.sequence for h in await store.search(query)}

    alpha = {1, 3, 4}
    assert await found("alpha") == alpha
    assert await found("alpha OR omega") == {3}  # "or" is a word to find, not an operator
    assert await found("alpha AND beta") == set()  # no text says "and"
    assert await found("alpha NOT beta") == {4}
    assert await found("alpha -beta") == {1, 4}  # "-" excludes nothing
    assert await found("alpha NEAR beta") == set()
    assert await found("NEAR(alpha beta)") == set()  # "near alpha" as a phrase, and beta
    assert await found("body:alpha") == set()  # not FTS column syntax: the phrase "body alpha"
    assert await found("^alpha") == alpha
    assert await found('"alpha') == alpha  # an unterminated quote runs to the end
    assert await found("alpha\x00beta") == {1, 4}  # NUL separates words
    assert await found("alpha' OR '1'='1") == set()
    assert await found("'; DROP TABLE sessions; --") == set()
    assert await found("alpha " * 1667) == alpha
    assert await found((PUNCTUATION * 400)[:10_000]) == set()
    assert await found("x" * 10_000) == set()
    assert await found(" ".join(f"t{i}" for i in range(500))) == {5}
    assert await found(" ".join(f"t{i}*" for i in range(499, -1, -1))) == {5}
    assert await found('"t0 t1 t2"') == {5}
    assert await found('"t0 t2"') == set()


async def test_every_one_of_many_query_words_must_match(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    await store.add_conversation_event(
        ev("s1", "c1", EventType.MESSAGE, at(0), content=" ".join(f"t{i}" for i in range(999)))
    )
    assert len(await store.search(" ".join(f"t{i}" for i in range(999)))) == 1
    assert await store.search(" ".join(f"t{i}" for i in range(1000))) == []  # t999 is missing
    assert len(await store.search('"' + " ".join(f"t{i}" for i in range(999)) + '"')) == 1
    assert await store.search('"' + " ".join(f"t{i}" for i in range(1, 1000)) + '"') == []
    assert len(await store.search("t1 " * 5000)) == 1  # one term, repeated


async def test_a_query_of_more_than_1000_terms_is_refused_not_cut(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    with pytest.raises(InvalidValueError, match="at most 1000 different terms; this one has 1001"):
        await store.search(" ".join(f"t{i}" for i in range(1001)))


async def test_a_lone_surrogate_is_invalid(store: Store) -> None:
    await build_alphabet(store)
    for query in ("\ud800", "alpha \udfff", "\ud83d\ude00"):  # the last: two lone halves
        with pytest.raises(InvalidValueError, match="surrogate"):
            await store.search(query)
    not_text: tuple[Any, ...] = (None, b"alpha", 5)
    for wrong in not_text:
        with pytest.raises(InvalidValueError):
            await store.search(wrong)
    with pytest.raises(InvalidValueError):
        await store.search("alpha", session_id=5)  # type: ignore[arg-type]


# --- the index follows every change -----------------------------------------------------------


async def test_title_summary_and_query_updates(store: Store) -> None:
    await build_corpus(store)
    await store.update_session(BILLING, SessionUpdate(title="Stripe signature checks"))
    assert keys(await store.search("billing refactor")) == {
        (BILLING, None, "query"),
        (BILLING, 1, "content"),
    }
    assert keys(await store.search("webhook", limit=200)) == EXPECTED["webhook"] - {
        (BILLING, None, "title")
    }
    assert keys(await store.search("stripe signature")) == {(BILLING, None, "title")}
    await store.update_session(BILLING, SessionUpdate(summary="Verified Stripe payloads"))
    assert keys(await store.search("stripe")) == {
        (BILLING, None, "title"),
        (BILLING, None, "summary"),
    }
    await store.update_session(BILLING, SessionUpdate(summary=""))
    assert keys(await store.search("stripe")) == {(BILLING, None, "title")}
    await store.update_session(AUTH, SessionUpdate(query="Harden the session cookies"))
    assert (AUTH, None, "query") not in keys(await store.search("rotation", limit=200))
    assert keys(await store.search("harden cookies")) == {(AUTH, None, "query")}
    # Other fields of the session are untouched by an update of one.
    assert (AUTH, None, "title") in keys(await store.search("rotation", limit=200))
    # An update that changes none of the indexed fields keeps the hits as they were.
    before = keys(await store.search("ecole"))
    await store.update_session(ECOLE, SessionUpdate(status="completed", cost_usd=0.25))
    assert keys(await store.search("ecole")) == before == ECOLE_HITS


async def test_a_tool_result_written_later_is_found(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    call = await store.add_conversation_event(
        ev(
            "s1",
            "c1",
            EventType.TOOL_CALL,
            at(1),
            tool_id="toolu_1",
            tool_name="Bash",
            tool_input_json='{"command":"pytest -x tests/test_flux.py"}',
        )
    )
    await store.add_conversation_event(
        ev("s1", "c1", EventType.MESSAGE, at(2), content="Running the flux tests now.")
    )
    assert await store.search("capacitor") == []
    result = await store.add_conversation_event(
        ev(
            "s1",
            "c1",
            EventType.TOOL_RESULT,
            at(3),
            role="user",
            tool_result_for_id="toolu_1",
            tool_result_content="FAILED tests/test_flux.py::test_capacitor - AssertionError",
        )
    )
    await store.mark_tool_call_completed("toolu_1", "s1")
    [hit] = await store.search("capacitor")
    assert (hit.field, hit.sequence, hit.event_id) == ("tool_result", 3, result.id)
    assert "[capacitor]" in hit.snippet
    # Completing the call left its own entry as it was: found once, as the tool input.
    assert key_list(await store.search("pytest")) == [("s1", call.sequence, "tool_input")]
    assert keys(await store.search("test_flux")) == {
        ("s1", 1, "tool_input"),
        ("s1", 3, "tool_result"),
    }


async def test_batch_appends_are_found(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    added = await store.add_conversation_events(
        [
            ev("s1", "c1", EventType.MESSAGE, at(i), content=f"batched walrus number{i}")
            for i in range(5)
        ]
    )
    hits = await store.search("walrus", limit=200)
    assert {h.event_id for h in hits} == {e.id for e in added}
    assert [h.sequence for h in await store.search("walrus number3")] == [4]


async def test_appends_in_a_transaction_are_found_after_commit_only(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))

    async def outside(query: str) -> list[SearchHit]:
        # Another task: not part of the open transaction.
        return await asyncio.create_task(store.search(query))

    async with store.transaction() as tx:
        await tx.sessions.create(
            Session(id="s2", run_id="r2", claude_session_id="c2", title="Committed narwhal")
        )
        await tx.conversations.add(
            ev("s2", "c2", EventType.MESSAGE, at(1), content="committed narwhal message")
        )
        await store.add_conversation_event(  # the store's own call joins the block
            ev("s1", "c1", EventType.MESSAGE, at(2), content="committed narwhal, too")
        )
        # The writer sees its own writes; nobody else does yet.
        assert len(await store.search("narwhal")) == 3
        assert await outside("narwhal") == []
    assert keys(await store.search("narwhal")) == {
        ("s2", None, "title"),
        ("s2", 1, "content"),
        ("s1", 1, "content"),
    }

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await tx.conversations.add(
                ev("s1", "c1", EventType.MESSAGE, at(3), content="rolled back okapi")
            )
            await tx.conversations.add_many(
                [ev("s2", "c2", EventType.MESSAGE, at(4), content="okapi again")]
            )
            await store.update_session("s2", SessionUpdate(title="okapi title"))
            raise Boom
    assert await store.search("okapi") == []
    assert keys(await store.search("narwhal")) == {
        ("s2", None, "title"),
        ("s2", 1, "content"),
        ("s1", 1, "content"),
    }
    # The rolled-back rows left no trace: new ones are indexed and found normally.
    await store.add_conversation_event(
        ev("s1", "c1", EventType.MESSAGE, at(5), content="okapi at last")
    )
    assert key_list(await store.search("okapi")) == [("s1", 2, "content")]


async def test_hard_delete_removes_the_sessions_hits(store: Store) -> None:
    await build_corpus(store)
    await store.hard_delete_session(BILLING)
    for query in ("webhook", "handlewebhook", "idempot*", "billing"):
        assert await store.search(query) == [], query
    assert await store.search("the", session_id=BILLING) == []
    # The others are untouched.
    assert keys(await store.search("rotation", limit=200)) == EXPECTED["rotation"]
    assert keys(await store.search("ecole")) == ECOLE_HITS
    # A new session under the same id starts with no old hits.
    await store.create_session(
        Session(id=BILLING, run_id="run-billing-2", claude_session_id="claude-billing-2")
    )
    assert await store.search("webhook") == []


# --- both backends agree ----------------------------------------------------------------------


# Scripts and letters beyond the corpus, and queries whose results both backends share.
UNICODE_DOCS = [
    "Ωμέγα",
    "ёлка",
    "Łódź",
    "Øresund",
    "Đà Nẵng",
    "naïve",
    "Ångström",
    "İstanbul",
    "ﬁle",
    "Straße",
    "Việt Nam",
    "Crème brûlée",
]
UNICODE_QUERIES = [
    "ωμέγα",
    "ΩΜΈΓΑ",
    "ёлка",
    "ЁЛКА",
    "łódź",
    "ŁÓDŹ",
    "lodz",
    "øresund",
    "oresund",
    "đà",
    "nẵng",
    "nang",
    "naive",
    "NAÏVE",
    "angstrom",
    "istanbul",
    "ﬁle",
    "file",
    "straße",
    "strasse",
    "STRASSE",
    "viet nam",
    '"viet nam"',
    "creme brulee",
    "CRÈME BRÛL*",
]


async def build_everything(store: Store, extra: Iterable[str] = ()) -> None:
    await build_corpus(store)
    await store.create_session(Session(id="alpha", run_id="r-alpha", claude_session_id="c-a"))
    texts = [
        "alpha beta",
        "alpha or omega",
        "alpha not beta",
        " ".join(f"t{i}" for i in range(500)),
        *UNICODE_DOCS,
        *extra,
    ]
    for i, text in enumerate(texts):
        await store.add_conversation_event(
            ev("alpha", "c-a", EventType.MESSAGE, at(300 + i), content=text)
        )


async def hits_on_both(
    postgres_url: str, tmp_path: Path, queries: list[str], extra: Iterable[str] = ()
) -> tuple[dict[str, set[tuple[str, int | None, str, str]]], ...]:
    """For each query, its hits as (session, sequence, field, snippet), on SQLite then on
    PostgreSQL, the same data written to both."""
    results = []
    for target in (str(tmp_path / "same.db"), postgres_url):
        async with await Store.open(target) as store:
            await build_everything(store, extra)
            found: dict[str, set[tuple[str, int | None, str, str]]] = {}
            for query in queries:
                hits = await store.search(query, limit=200)
                found[query] = {(h.session_id, h.sequence, h.field, h.snippet) for h in hits}
            results.append(found)
    return tuple(results)


async def test_sqlite_and_postgresql_give_the_same_hits(postgres_url: str, tmp_path: Path) -> None:
    queries = [
        *EXPECTED,
        *HOSTILE,
        *UNICODE_QUERIES,
        "the",
        "a",
        "t*",
        "re*",
        "to the",
        '"to the"',
    ]
    sqlite_found, postgres_found = await hits_on_both(postgres_url, tmp_path, queries)
    for query in queries:
        assert sqlite_found[query] == postgres_found[query], repr(query[:40])
    assert sum(1 for q in queries if sqlite_found[q]) > 50  # most queries find something
    # What holds on both: Latin accents fold, letters that are not accented forms do not
    # (ł, ø, đ, ß), nor compatibility forms (ﬁ).
    assert sqlite_found["naive"] == sqlite_found["NAÏVE"] != set()
    assert sqlite_found["creme brulee"] == sqlite_found["CRÈME BRÛL*"] != set()
    assert sqlite_found["viet nam"] == sqlite_found['"viet nam"'] != set()
    assert sqlite_found["ωμέγα"] == sqlite_found["ΩΜΈΓΑ"] != set()
    assert sqlite_found["łódź"] == sqlite_found["ŁÓDŹ"] != set()
    for unfolded in ("lodz", "oresund", "strasse"):
        assert sqlite_found[unfolded] == set(), unfolded
    assert {k[0] for k in sqlite_found["file"]} == {AUTH, ECOLE}  # file_path, not ﬁle


@pytest.mark.parametrize(
    "query",
    ["ωμεγα", "ΩΜΕΓΑ", "елка", "ёлка", "x", "x²", "½", "λογοσ", "λόγος"],
)
async def test_both_backends_fold_and_split_alike(
    postgres_url: str, tmp_path: Path, query: str
) -> None:
    sqlite_found, postgres_found = await hits_on_both(
        postgres_url, tmp_path, [query], extra=["x² ½ done", "ΛΌΓΟΣ"]
    )
    assert sqlite_found[query] == postgres_found[query]
    # Greek and Cyrillic accents are kept; final sigma is sigma; x² and ½ are words.
    found = {"ωμεγα": 0, "ΩΜΕΓΑ": 0, "елка": 0, "ёлка": 1, "x": 0, "x²": 1, "½": 1}
    found |= {"λογοσ": 0, "λόγος": 1}
    assert len(sqlite_found[query]) == found[query]


MARKED_SCRIPTS = [
    "हिन्दी में परीक्षण",  # Hindi: vowel signs and virama
    "বাংলা ভাষা",  # Bengali
    "தமிழ் மொழி",  # Tamil
    "ગુજરાતી ભાષા",  # Gujarati
    "العَرَبِيَّة لغة",  # Arabic with its vowel marks
    "עִבְרִית שפה",  # Hebrew with points
    "ภาษาไทย ง่าย",  # Thai tone mark
]


async def test_words_with_combining_marks_find_their_text(store: Store) -> None:
    # unicode61 cuts such words at most of their marks (Unicode 6.1 classes them apart from
    # letters); the query is cut the same way, as a phrase, so each word finds its text.
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    for i, text in enumerate(MARKED_SCRIPTS):
        await store.add_conversation_event(ev("s1", "c1", EventType.MESSAGE, at(i), content=text))
    missing = []
    for i, text in enumerate(MARKED_SCRIPTS, start=1):
        for word in text.split():
            if [h.sequence for h in await store.search(word)] != [i]:
                missing.append(word)
    assert missing == []


async def test_words_without_combining_marks_in_other_scripts(store: Store) -> None:
    texts = ["한국어 텍스트", "ひらがな カタカナ", "Հայերեն լեզու", "ქართული ენა", "Русский язык"]
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    for i, text in enumerate(texts):
        await store.add_conversation_event(ev("s1", "c1", EventType.MESSAGE, at(i), content=text))
    for i, text in enumerate(texts, start=1):
        for word in text.split():
            hits = await store.search(word)
            assert [(h.sequence, h.snippet) for h in hits] == [
                (i, text.replace(word, f"[{word}]"))
            ], word
    assert [h.sequence for h in await store.search("한국")] == []  # no segmentation


async def test_a_decomposed_query_finds_the_word(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    await store.add_conversation_event(ev("s1", "c1", EventType.MESSAGE, at(0), content="école"))
    await store.add_conversation_event(
        ev("s1", "c1", EventType.MESSAGE, at(1), content="e\u0301cole")
    )
    assert {h.sequence for h in await store.search("ecole")} == {1, 2}  # holds
    assert {h.sequence for h in await store.search("e\u0301cole")} == {1, 2}


async def test_snippets_mark_words_of_decomposed_text(store: Store) -> None:
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    await store.add_conversation_event(
        ev("s1", "c1", EventType.TOOL_RESULT, at(0), tool_result_content="docs/e\u0301cole.md")
    )
    [hit] = await store.search("ecole")
    assert "[e\u0301cole]" in hit.snippet


EVERY_CODE_POINT = [code for code in range(1, 0x110000) if not 0xD800 <= code <= 0xDFFF]


def contexts(code: int) -> str:
    """A code point alone, inside a word, at a word's start and end."""
    char = chr(code)
    return f"{char} a{char}b {char}Z Q{char}"


def test_python_cuts_and_folds_every_code_point_as_sqlite_does() -> None:
    from agentstore.unicode61 import fold, words

    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE VIRTUAL TABLE t USING fts3tokenize(unicode61, 'remove_diacritics=2')")
        differ = []
        for start in range(0, len(EVERY_CODE_POINT), 4096):
            chunk = EVERY_CODE_POINT[start : start + 4096]
            # One input per chunk: the code points' contexts, separated by a form feed.
            text = "\f".join(contexts(code) for code in chunk)
            expected = [
                row[0] for row in conn.execute("SELECT token FROM t WHERE input = ?", (text,))
            ]
            if [fold(word) for word in words(text)] != expected:
                differ += [
                    code
                    for code in chunk
                    if [fold(w) for w in words(contexts(code))]
                    != [
                        row[0]
                        for row in conn.execute(
                            "SELECT token FROM t WHERE input = ?", (contexts(code),)
                        )
                    ]
                ]
    assert differ == []


async def test_postgresql_cuts_and_folds_every_code_point_as_python_does(postgres_url: str) -> None:
    from agentstore.unicode61 import fold, words

    async with await Store.open(postgres_url) as store:
        async with store.engine.connect() as conn:
            # 32 code points' contexts per text, 50,000 texts per statement.
            texts = [
                "\f".join(contexts(code) for code in EVERY_CODE_POINT[start : start + 32])
                for start in range(0, len(EVERY_CODE_POINT), 32)
            ]
            rows = (
                await conn.exec_driver_sql(
                    "SELECT agentstore_words(t) FROM unnest($1::text[]) WITH ORDINALITY "
                    "AS x(t, n) ORDER BY n",
                    (texts,),
                )
            ).all()
            differ = [
                text
                for text, (indexed,) in zip(texts, rows, strict=True)
                if indexed != " ".join(fold(word) for word in words(text))
            ]
    assert differ == []


def documents_to_compare() -> list[str]:
    """Texts for pg_document against agentstore_document: every code point in context, and
    every limit (long words, more words than positions, more text than is indexed)."""
    rng = random.Random(7)
    texts = [
        "\f".join(contexts(code) for code in EVERY_CODE_POINT[start : start + 32])
        for start in range(0, len(EVERY_CODE_POINT), 32)
    ]
    alphabet = [chr(c) for c in (*range(0x20, 0x7F), 0xE9, 0x301, 0xDF, 0x3A9, 0x2019, 0x3000)]
    texts += ["".join(rng.choices(alphabet, k=rng.randrange(1, 400))) for _ in range(2_000)]
    texts += [
        "",
        " \t\n!! ",
        "\u0301a\u0301b \u0301",
        "word " + "k" * 300 + " \u00e9" * 2 + "K" * 257,
        " ".join(f"w{i % 500}" for i in range(17_000)),  # past position 16,383
        "é " * 16_400,
        "abc " * 70_000,  # 280,000 characters: cut at 250,000, inside a word
        "x" * 249_999 + " yz" + " é" * 10,
        "Ωμέγα ΛΌΓΟΣ ёлка ǅ ǲ ﬁ straße İstanbul x²",
    ]
    return texts


def test_the_tables_allow_folding_one_character_at_a_time() -> None:
    # pg_document replaces each distinct character by its fold and splits on whitespace:
    # exact only if no fold is folded again and every space Python knows is a separator.
    from agentstore._unicode61_tables import SEPARATORS
    from agentstore.unicode61 import folds_are_final

    assert folds_are_final()
    spaces = [code for code in range(0x110000) if chr(code).isspace()]
    assert all(any(low <= code <= high for low, high in SEPARATORS) for code in spaces)


async def test_python_builds_the_documents_postgresql_builds(postgres_url: str) -> None:
    # copy_database builds the search index's documents on the client (pg_document);
    # they must be exactly what the trigger's agentstore_document() makes.
    from agentstore.unicode61 import pg_document

    texts = documents_to_compare()
    async with await Store.open(postgres_url) as store:
        async with store.engine.connect() as conn:
            differ = []
            for start in range(0, len(texts), 5_000):
                chunk = texts[start : start + 5_000]
                rows: Any = (
                    await conn.exec_driver_sql(
                        "SELECT agentstore_document(t)::text, d::tsvector::text "
                        "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(t, d, n) "
                        "ORDER BY n",
                        (chunk, [pg_document(text) for text in chunk]),
                    )
                ).all()
                differ += [t[:80] for t, row in zip(chunk, rows, strict=True) if row[0] != row[1]]
    assert differ == []


async def test_postgresql_does_not_depend_on_the_database_locale(postgres_url: str) -> None:
    # A database made with the C locale, whose lower() and text search parser see only
    # ASCII letters: the index is the same.
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"c_locale_{random.randrange(10**9)}"
    try:
        async with admin.connect() as conn:
            await conn.execute(
                sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0 LC_COLLATE "C" LC_CTYPE "C"')
            )
        url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        async with await Store.open(url) as store:
            await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
            text = "ÉCOLE Ωμέγα ΛΌΓΟΣ Ёлка x² हिन्दी"
            await store.add_conversation_event(
                ev("s1", "c1", EventType.MESSAGE, at(0), content=text)
            )
            for query in ("ecole", "ωμέγα", "λόγος", "ёлка", "x²", "हिन्दी"):
                assert len(await store.search(query)) == 1, query
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        await admin.dispose()


async def test_huge_fields_are_stored_and_searchable(store: Store, agentstore_backend: str) -> None:
    # 4 MB of distinct words: more than a PostgreSQL tsvector may hold (1 MiB of lexemes).
    await store.create_session(Session(id="s1", run_id="r1", claude_session_id="c1"))
    blob = " ".join(f"w{i:07x}" for i in range(450_000))
    long_word = "needle" + "k" * 5000
    await store.add_conversation_event(
        ev("s1", "c1", EventType.TOOL_RESULT, at(0), tool_result_content=f"start {blob} end")
    )
    await store.add_conversation_event(
        ev("s1", "c1", EventType.MESSAGE, at(1), content=f"{long_word} tail")
    )
    assert await store.get_event_count() == 2
    [first] = await store.search("start w0000000")
    assert first.sequence == 1
    assert len(first.snippet) < 400
    assert [h.sequence for h in await store.search(long_word)] == [2]
    assert [h.sequence for h in await store.search("needlek*")] == [2]
    # The end of the 4 MB text: indexed on SQLite; past PostgreSQL's 250,000 characters.
    expected = [1] if agentstore_backend == "sqlite" else []
    assert [h.sequence for h in await store.search("end")] == expected


# --- an adopted hld file ----------------------------------------------------------------------

_WORD = r"[^\W_]+"


def fold(text: str) -> list[str]:
    """The words of a text as the index compares them (the test's own reckoning)."""
    words = re.findall(_WORD, text)
    out = []
    for word in words:
        decomposed = unicodedata.normalize("NFD", word.lower())
        out.append("".join(c for c in decomposed if not unicodedata.combining(c)))
    return out


def expected_in_hld_file(db: Path, word: str) -> set[tuple[str, int | None, str]]:
    """(session id, event id or None, field) of every row of an hld file holding ``word``."""
    found: set[tuple[str, int | None, str]] = set()
    with closing(sqlite3.connect(db)) as conn:
        for sid, *texts in conn.execute("SELECT id, title, summary, query FROM sessions"):
            for field, text in zip(("title", "summary", "query"), texts, strict=True):
                if text and word in fold(text):
                    found.add((sid, None, field))
        for eid, sid, *texts in conn.execute(
            "SELECT id, session_id, content, tool_input_json, tool_result_content "
            "FROM conversation_events"
        ):
            for field, text in zip(("content", "tool_input", "tool_result"), texts, strict=True):
                if text and word in fold(text):
                    found.add((sid, eid, field))
    return found


async def test_adopting_an_hld_file_builds_the_index(hld_fixtures: Path, tmp_path: Path) -> None:
    # Two copies: one to adopt, one to read the expected rows from (hld's files are in WAL
    # mode: even a reader writes beside the file it opens).
    db = tmp_path / "hld.db"
    original = tmp_path / "reference.db"
    shutil.copy(hld_fixtures / "hld_v22_populated.db", db)
    shutil.copy(hld_fixtures / "hld_v22_populated.db", original)
    words = ["flaky", "resume", "cafe", "webhook", "staging", "refreshtoken", "rotation", "mock"]
    expected = {word: expected_in_hld_file(original, word) for word in words}
    assert all(0 < len(found) < 200 for found in expected.values())
    assert {sid for sid, _, _ in expected["flaky"]} == {"e5b416bb-2fb1-4f0a-9646-a1a973e9f090"}
    assert ("2e3bb29f-49a0-48c1-9e93-fa4e492e3044", None, "query") in expected["resume"]
    async with await Store.open(db) as store:
        for word in words:
            hits = await store.search(word, limit=200)
            assert {(h.session_id, h.event_id, h.field) for h in hits} == expected[word], word
            assert all(f"[{word}]" in fold_marks(h.snippet) for h in hits), word
        # Snippets keep hld's text as it is.
        [query] = [h for h in await store.search("résumé") if h.field == "query"]
        assert query.snippet == "Summarize the open TODOs in docs/ — [résumé] in a table"
        # hld's local times with offsets order by instant: 7c5b9b03 was made at 16:30Z,
        # 2e3bb29f at 09:00-08:00 = 17:00Z (as text, 7c5b9b03's "16:30" sorts later).
        for sid in ("7c5b9b03-e097-4439-960d-c8b1488992a6", "2e3bb29f-49a0-48c1-9e93-fa4e492e3044"):
            await store.update_session(sid, SessionUpdate(title="Quarterly walrus audit"))
        hits = await store.search("quarterly walrus")
        assert [h.session_id[:8] for h in hits] == ["2e3bb29f", "7c5b9b03"]
        assert hits[0].created_at == datetime(2025, 11, 3, 17, 0, 0, 4965, tzinfo=UTC)
    with closing(sqlite3.connect(db)) as conn:
        fields = conn.execute(
            "SELECT (SELECT COUNT(*) FROM sessions WHERE title <> '') + "
            "(SELECT COUNT(*) FROM sessions WHERE coalesce(summary, '') <> '') + "
            "(SELECT COUNT(*) FROM sessions WHERE coalesce(query, '') <> '') + "
            "(SELECT COUNT(*) FROM conversation_events WHERE content <> '') + "
            "(SELECT COUNT(*) FROM conversation_events WHERE tool_input_json <> '') + "
            "(SELECT COUNT(*) FROM conversation_events WHERE tool_result_content <> '')"
        ).fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM agentstore_search").fetchone()[0] == fields


def fold_marks(snippet: str) -> str:
    """A snippet with its marked words folded, for comparing with a folded query word."""
    return re.sub(r"\[([^\[\]]*)\]", lambda m: "[" + "".join(fold(m.group(1))) + "]", snippet)


# --- a file hld's own Go store still opens and writes -------------------------------------------


async def run_tool(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_hld_writes_a_file_with_the_index_and_its_rows_are_found(tmp_path: Path) -> None:
    """How the FTS5 constraint is checked: hld-go-store is hld's own store code on hld's own
    SQLite (go-sqlite3's default build: FTS3/FTS4, no FTS5). Its ``write`` inserts sessions
    and events into a copy of a file agentstore made, so agentstore's triggers run inside
    that SQLite: had they written an FTS5 table, ``write`` would fail with "no such module:
    fts5" (the control at the end shows it does, for an FTS5 trigger). Here it succeeds, and
    the index holds hld's rows."""
    if not HLD_GO_STORE.exists():
        pytest.skip(f"hld's Go store is not at {HLD_GO_STORE}")
    made = tmp_path / "agentstore.db"
    async with await Store.open(made) as store:
        await build_corpus(store)
    with closing(sqlite3.connect(made)) as conn:
        assert conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE sql LIKE '%fts5%'"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'agentstore_search'"
        ).fetchone() == (1,)
    copy = tmp_path / "shared.db"
    shutil.copy(made, copy)

    code, out, err = await run_tool(str(HLD_GO_STORE), "write", str(copy), "gohld1")
    assert (code, out.strip()) == (0, "ok"), err
    code, out, err = await run_tool(str(HLD_GO_STORE), "dump", str(copy))
    assert code == 0, err
    dump = json.loads(out)
    assert {"gohld1-sess-1", "gohld1-sess-2", AUTH, BILLING, ECOLE} <= {
        s["id"] for s in dump["sessions"]
    }

    # The triggers fired inside hld's SQLite: every non-empty field hld wrote is indexed.
    with closing(sqlite3.connect(copy)) as conn:
        wanted = {
            row[0]
            for row in conn.execute(
                "SELECT id * 8 + 3 FROM conversation_events WHERE content <> '' "
                "AND session_id LIKE 'gohld1-%' UNION ALL "
                "SELECT id * 8 + 4 FROM conversation_events WHERE tool_input_json <> '' "
                "AND session_id LIKE 'gohld1-%' UNION ALL "
                "SELECT id * 8 + 5 FROM conversation_events WHERE tool_result_content <> '' "
                "AND session_id LIKE 'gohld1-%'"
            )
        }
        indexed = {
            row[0]
            for row in conn.execute(
                "SELECT docid FROM agentstore_search WHERE docid % 8 >= 3 "
                "AND session_id LIKE 'gohld1-%'"
            )
        }
        assert len(wanted) >= 10
        assert indexed == wanted
        hld_events = conn.execute(
            "SELECT COUNT(*) FROM conversation_events WHERE session_id LIKE 'gohld1-%'"
        ).fetchone()[0]
        assert hld_events > 0

    async with await Store.open(copy) as store:
        denied = await store.search("deleting")
        assert [(h.session_id, h.field) for h in denied] == [("gohld1-sess-1", "tool_result")]
        assert "[deleting]" in denied[0].snippet
        child = await store.search('"gohar child"')
        assert [(h.session_id, h.field) for h in child] == [("gohld1-sess-2", "title")]
        parser = await store.search("parser", session_id="gohld1-sess-1", limit=200)
        assert {h.field for h in parser} >= {"query", "content", "tool_input", "tool_result"}
        cafe = await store.search("cafe")
        assert ("gohld1-sess-1", "content") in {(h.session_id, h.field) for h in cafe}
        assert keys(await store.search("webhook", limit=200)) == EXPECTED["webhook"]
        # agentstore writes on, then hld again: both stay indexed.
        await store.add_conversation_event(
            ev(AUTH, AUTH_C, EventType.MESSAGE, at(500), content="agentstore pangolin")
        )
    code, out, err = await run_tool(str(HLD_GO_STORE), "write", str(copy), "gohld2")
    assert (code, out.strip()) == (0, "ok"), err
    async with await Store.open(copy) as store:
        assert {h.session_id for h in await store.search("deleting")} == {
            "gohld1-sess-1",
            "gohld2-sess-1",
        }
        assert key_list(await store.search("pangolin")) == [(AUTH, 8, "content")]

    # Control: the same check does catch FTS5. A trigger writing an FTS5 table (made with
    # Python's SQLite, which has FTS5) makes hld's write fail.
    control = tmp_path / "fts5.db"
    shutil.copy(made, control)
    with closing(sqlite3.connect(control)) as conn:
        try:
            conn.execute("CREATE VIRTUAL TABLE probe_fts5 USING fts5(body)")
        except sqlite3.OperationalError:
            pytest.skip("this Python's SQLite has no FTS5: the control cannot be built")
        conn.execute(
            "CREATE TRIGGER probe_fts5_insert AFTER INSERT ON conversation_events "
            "BEGIN INSERT INTO probe_fts5 (body) VALUES (NEW.content); END"
        )
        conn.commit()
    code, out, err = await run_tool(str(HLD_GO_STORE), "write", str(control), "gohld3")
    assert code != 0
    assert "no such module: fts5" in out + err


# --- the command ------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "search", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_search_command(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"

    async def build() -> None:
        async with await Store.open(db) as store:
            await build_corpus(store)

    asyncio.run(build())
    header = "SESSION\tSEQ\tFIELD\tTIME (UTC)\tSNIPPET"

    table = cli("webhook", "--db", str(db))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == header
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 5 for row in rows)
    assert {(r[0], int(r[1]) if r[1] else None, r[2]) for r in rows} == EXPECTED["webhook"]
    by_seq = {r[1]: r for r in rows if r[1]}
    assert by_seq["4"][3] == "2025-10-21 17:44:00"
    assert by_seq["4"][4] == "The [webhook] handler now stores the event id; a retry is a no-op."
    # Texts with newlines (a tool result here) stay on their line.
    multiline = cli("rotation", "--db", str(db)).stdout.splitlines()
    assert len(multiline) == 1 + len(EXPECTED["rotation"])
    assert all(len(line.split("\t")) == 5 for line in multiline)
    assert any(
        line.endswith("PASS tests/[rotation].test.ts ✓ rejects a reused token (12 ms)")
        for line in multiline
    )

    as_json = cli("ecole", "--json", "--db", str(db))
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert {(d["session_id"], d["sequence"], d["field"]) for d in document} == ECOLE_HITS
    for d in document:
        assert set(d) == {
            "session_id",
            "claude_session_id",
            "event_id",
            "sequence",
            "field",
            "snippet",
            "created_at",
        }
        assert d["claude_session_id"] == ECOLE_C
        assert datetime.fromisoformat(d["created_at"]).utcoffset() == timedelta(0)
        assert (d["event_id"] is None) == (d["sequence"] is None)
    assert "Traduction de l'[ÉCOLE]" in {d["snippet"] for d in document}

    only = cli("the", "--session", BILLING, "--db", str(db), "--json")
    assert only.returncode == 0, only.stderr
    assert {d["session_id"] for d in json.loads(only.stdout)} == {BILLING}
    none = cli("rotation", "--session", BILLING, "--db", str(db))
    assert (none.returncode, none.stdout) == (0, header + "\n")

    limited = cli("rotation", "--limit", "2", "--db", str(db))
    assert limited.returncode == 0, limited.stderr
    assert len(limited.stdout.splitlines()) == 3

    for hostile in ('"NEAR(a b', "col:val ) ( * -x ^ ;DROP TABLE sessions;--", "x" * 10_000):
        result = cli(hostile, "--db", str(db))
        assert (result.returncode, result.stdout, result.stderr) == (0, header + "\n", "")
    result = cli('"unterminated OR', "--json", "--db", str(db))
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == []
