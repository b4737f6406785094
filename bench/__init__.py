"""Benchmark agentstore against the raw driver doing the same work, in the same run.

Run ``python bench/run.py [--rounds N] [--quick] [--postgres-url URL]`` (``--only W1,W4``
for some workloads). The files: ``run.py`` (the entry point), ``common.py`` (sizes, targets,
timing, results, tables, machine and versions), ``backends.py`` (fresh databases and the raw
connections), ``fixtures.py`` (setup rows), ``writes.py`` (W1 W2 W4), ``reads.py`` (W3 W5 W6
W7), ``opening.py`` (O1 O2), ``search.py`` (S1 S2), ``watches.py`` (L1 L2 C1 F1 F2) and
``transfer.py`` (X1 X2 X3); each of the last three has its own method in its docstring.

Method. Every workload runs ``--rounds`` times (5 by default, 2 with ``--quick``, which also
shrinks the sizes) on a fresh database: a file in a new temporary folder, or on PostgreSQL
a new database, dropped afterwards. Within a round the raw baseline and agentstore
alternate (raw, agentstore, raw, agentstore…). Connections are open and warm before the
clock starts on both sides; a full garbage collection runs before each timed call, and the
clock stops when the call returns (freeing what it returned is left out on both sides
alike). The output is one markdown table per backend (SQLite, then PostgreSQL when a URL is
given or ``AGENTSTORE_TEST_POSTGRES_URL`` is set) of the medians over rounds in
milliseconds, the ratio agentstore/raw of the medians, the range of the per-round ratios
and, where the project set one, the target and PASS/FAIL. Its header names the machine, the
versions, and the durability both sides ran at, read back from agentstore's own connection
and from the raw one. Progress goes to stderr, the tables to stdout.

Every round also checks the results — sequences exactly 1..N (both those handed back to the
caller and those stored), the same ids in the same order on both sides, and what the
fixture implies (row counts, order, which sessions a search must find) — so a fast wrong
answer cannot pass: its row says CHECK FAILED.

Targets (agentstore / raw, of the medians):

=====  ======================================================  ======  ==========
 key    workload                                                SQLite  PostgreSQL
=====  ======================================================  ======  ==========
 W1     1,000 single appends                                    1.3     1.3
 W2     20,000 events in batches of 500, inputs built inside    1.5     1.5
 W3     read a 10,000-event conversation                        1.3     1.6
 W4     20 tasks x 100 appends, one Claude session, one store   0.33    0.5
 W5     list 5,000 sessions                                     1.3     1.5
=====  ======================================================  ======  ==========

W4's ratio is agentstore's wall time for the 2,000 concurrent appends over raw's for the
same 2,000 appends made one after another. W6, W7, O1 and O2 are informational.

The raw baseline is what a careful hand-written data layer would do, with nothing but the
driver, at the same durability as agentstore:

* SQLite: one ``aiosqlite`` connection opened with ``isolation_level=None`` (autocommit;
  transactions are its own ``BEGIN``), set up as agentstore sets up each of its
  connections — ``synchronous=FULL`` (agentstore's default durability: every commit fsyncs
  the WAL, on both sides), ``foreign_keys=ON``, ``busy_timeout`` (agentstore's
  ``agentstore.db.sqlite.BUSY_TIMEOUT_MS``), ``journal_mode=WAL`` (the file's mode since
  ``Store.open`` made it) — with the same ``agentstore_lower`` function registered
  (``create_function``). agentstore itself runs each call as one job on a thread that owns
  a stdlib ``sqlite3`` connection (one writer, two readers) and group-commits appends.
* PostgreSQL: one ``asyncpg`` connection; the server's ``synchronous_commit`` and ``fsync``
  on both sides (the header shows them: a throwaway test server may run ``fsync=off``, and
  then no commit waits for a flush, on either side).

The schema is agentstore's own: each database is opened once with ``Store.open`` (which
migrates it) and the rows a workload needs are made then, before any timing — so both sides
run on the identical schema, indexes and data.

What each raw baseline does, and why it is the same work as the agentstore call:

W1  ``add_conversation_event`` x 1,000, one call after another, each building its
    ``ConversationEvent``. Raw, per event, one atomic statement in its own transaction:
    ``INSERT … SELECT …, COALESCE(MAX(sequence), 0) + 1 … FROM conversation_events WHERE
    claude_session_id = ? RETURNING id, sequence`` — on SQLite one autocommit statement
    (one hand-off to aiosqlite's thread, one commit); on PostgreSQL ``BEGIN; SELECT
    pg_advisory_xact_lock(k)`` in one round trip (``k`` is agentstore's key,
    ``agentstore.db.lock_key`` of the Claude session id), the ``INSERT``, ``COMMIT``: three
    round trips, as agentstore's ``BEGIN`` + lock, fused append statement, ``COMMIT``. Both
    assign the next sequence atomically (safe against concurrent writers) and hand back the
    id and sequence; agentstore also checks every value, checks that the session exists,
    and (on SQLite) runs ``BEGIN IMMEDIATE … COMMIT`` around its statements in its writer.
W2  ``add_conversation_events``, 40 batches of 500. The caller's input is built inside the
    timed region on both sides: agentstore's caller builds each batch's 500
    ``ConversationEvent`` objects just before the call; raw builds its parameter tuples
    (sequences included) inside its transaction. Raw, per batch: ``BEGIN IMMEDIATE``,
    ``SELECT MAX(sequence)``, one ``executemany`` of a plain 16-column ``INSERT``,
    ``COMMIT`` (PostgreSQL: ``BEGIN`` + the advisory lock in one round trip, ``MAX``,
    ``executemany``, ``COMMIT``). agentstore also checks every value and sets the new ids
    and sequences on the events.
W3  ``get_conversation`` of 10,000 events. Raw: ``SELECT`` of the 16 columns agentstore
    reads (all but ``claude_session_id``, which the caller gave) ``WHERE claude_session_id
    = ? ORDER BY sequence, id``, fetched as the driver's tuples; agentstore's statement
    also coalesces NULL strings to ``''``, and it returns ``ConversationEvent`` objects with
    parsed timestamps. Several reads per round, alternating; the round counts the median.
W4  20 tasks x 100 ``add_conversation_event`` calls to ONE Claude session through one
    ``Store`` (``asyncio.gather``): agentstore group-commits what queues while a group is
    being written. The raw reference is W1's raw statement run 2,000 times one after
    another on its single connection (a raw layer has no group commit: one commit, one
    fsync or server flush, per append). The ratio is agentstore's wall time over raw's.
    Every round also checks: no errors, no duplicate sequences, the stored sequences
    exactly 1..2000, and the (id, sequence) handed back to each caller are the rows stored;
    the second table gives appends/s on both sides.
W5  ``list_sessions()`` over 5,000 sessions. Raw: exactly agentstore's SQL text —
    ``agentstore.repos.sessions._list_query(True, None, False, False).on(dialect).sql`` —
    with the arguments it binds (the ``''`` of its coalesces), fetched as tuples. The ids
    must be the fixture's, newest activity first.
W6  ``get_session_conversation(leaf)`` over a resume chain of 5 sessions x 2,000 events.
    Raw, in one read transaction (SQLite ``BEGIN … COMMIT``; PostgreSQL ``REPEATABLE READ
    READ ONLY``, as agentstore): walk the ``parent_session_id`` chain with one ``SELECT``
    per session, then one ``SELECT … WHERE claude_session_id IN (…) ORDER BY CASE … END,
    sequence``.
W7  ``search_sessions_by_title("needle", 50)`` over 10,000 sessions (matches in title,
    summary and query; archived, draft and discarded ones; parents). Raw: exactly
    agentstore's SQL text — ``agentstore.repos.sessions._search_query(dialect,
    True).on(dialect).sql`` — with the arguments it binds (the text lower-cased, the
    limit); on SQLite it calls ``agentstore_lower``, registered on the raw connection with
    ``create_function`` (the store's own function, ``agentstore.db.sqlite._lower``); on
    PostgreSQL it is ``lower()``. The ids must be those the fixture implies.
O1  (SQLite) ``Store.open(':memory:')`` + ``close()``, ms per open: the median of 200 opens
    per side per round, after a warm-up open (which migrates the in-memory template once
    per process). Raw: ``aiosqlite.connect(':memory:')`` + ``close()``. agentstore's open
    also copies the migrated schema into the new database and starts and stops its
    writer thread.
O2  Reopening a database agentstore has already migrated, ms per open (median of 200 per
    side per round, after a warm-up open). SQLite: ``Store.open(path)`` + ``close()`` (a
    read-only look at the file's revision, the writer thread, its connection and
    settings) against ``aiosqlite.connect(path)`` + ``close()``. PostgreSQL:
    ``Store.open(url)`` + ``close()`` (an engine, a pooled connection, the revision read,
    the engine disposed) against ``asyncpg.connect`` + ``close()``.
"""
