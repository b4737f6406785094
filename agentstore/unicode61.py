"""Words as the search index sees them: SQLite FTS4's ``unicode61`` tokenizer with
``remove_diacritics=2``, exactly, in Python and in PostgreSQL.

On SQLite the index is FTS4 (the SQLite hld ships has FTS4, not FTS5) and its tokenizer
decides what a word is. Everything else that handles words follows it, so that a query
finds the same rows on both backends and its snippet marks the words that matched:

* the query is cut into words here, with the same rule;
* snippets compare the stored text's words with the query's, folded here;
* PostgreSQL indexes the words of :data:`PG_WORDS_FUNCTION`, which cuts and folds them in
  SQL from the same tables.

The rule (from SQLite's source, and read back from the tokenizer itself by
``tools/generate_unicode61.py`` into :mod:`agentstore._unicode61_tables`): a word is a run
of characters that are not separators (spaces, punctuation, most symbols and combining marks
of Unicode 6.1, 7,997 code points in all), starting with one that is not one of 25 Latin
combining accents either; those accents are dropped from words, every other character is
folded to one character — lower case and, for Latin letters, without accents. Nothing else
is normalised: ``ﬁ`` is not ``fi``, ``ß`` not ``ss``, ``ø`` and ``ł`` keep their stroke,
Greek and Cyrillic keep their accents in precomposed form (``έ``, ``ё``), and text without
spaces (Chinese, Japanese, Thai) is one word per run.
"""

from __future__ import annotations

import json
import re
from itertools import chain, repeat
from operator import add
from typing import Final

from agentstore._unicode61_tables import DIACRITICS, FOLDS, SEPARATORS

__all__ = ["PG_DOCUMENT_FUNCTION", "PG_WORDS_FUNCTION", "WORD", "fold", "words"]


def _char(code: int) -> str:
    return f"\\U{code:08x}" if code > 0xFFFF else f"\\u{code:04x}"


def _class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in ranges)


_SEPARATORS: Final = _class(SEPARATORS)
_DIACRITICS: Final = _class(tuple((code, code) for code in DIACRITICS))

#: One word of a text, in its stored form (fold it with :func:`fold`).
WORD: Final = re.compile(f"[^{_SEPARATORS}{_DIACRITICS}][^{_SEPARATORS}]*")

_FOLD_TABLE: Final[dict[int, int | None]] = {**FOLDS, **dict.fromkeys(DIACRITICS)}


def words(text: str) -> list[str]:
    """The words of ``text`` as they are stored (not folded)."""
    return WORD.findall(text)


def fold(word: str) -> str:
    """A word as the index holds it: without its Latin accents, each character folded."""
    return word.translate(_FOLD_TABLE)


# --- PostgreSQL ---------------------------------------------------------------------------------
# Part of revision 0005: a change here must be a new revision. PostgreSQL's regular
# expressions take the same \uXXXX / \UXXXXXXXX escapes in bracket expressions.

#: Words longer than this many characters are cut to it in PostgreSQL's index (a lexeme may
#: have at most 2,046 bytes) and in its queries.
PG_MAX_WORD: Final = 256
#: PostgreSQL indexes the words of the first this many characters of a field (a document
#: may hold at most 1 MiB of lexemes; 250,000 characters are at most 1,000,000 bytes).
PG_MAX_TEXT: Final = 250_000

# Non-ASCII folds, looked up for the few distinct characters a text holds: translate()
# with all 1,248 of them costs about 4 ms per 1,000 characters.
_PG_FOLDS: Final = json.dumps(
    {chr(code): chr(folded) for code, folded in FOLDS.items() if code > 0x7F},
    ensure_ascii=False,
    separators=(",", ":"),
)

#: ``agentstore_words(text)``: the text's words, folded, separated by single spaces.
#: ASCII is lowered under the C collation whatever the database's locale is.
PG_WORDS_FUNCTION: Final = f"""
CREATE FUNCTION agentstore_words(body text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $function$
DECLARE
    result text := lower(btrim(regexp_replace(regexp_replace(body,
        '[{_DIACRITICS}]+', '', 'g'), '[{_SEPARATORS}]+', ' ', 'g')) COLLATE "C");
    source text;
    target text;
BEGIN
    IF result ~ '[^\\u0001-\\u007f]' THEN
        SELECT string_agg(c, ''), string_agg(f, '') INTO source, target
        FROM (SELECT c, '{_PG_FOLDS}'::jsonb ->> c AS f
              FROM (SELECT DISTINCT c FROM regexp_split_to_table(
                        regexp_replace(result, '[\\u0001-\\u007f]+', '', 'g'), '') AS c) AS d
             ) AS m
        WHERE f IS NOT NULL;
        IF source IS NOT NULL THEN
            result := translate(result, source, target);
        END IF;
    END IF;
    RETURN result;
END
$function$"""

#: ``agentstore_document(text)``: the text's words as a tsvector, each at its position
#: (PostgreSQL keeps positions up to 16,383: later words all count as the 16,383rd). Built
#: from the words themselves rather than by a text search parser, which would cut them
#: again by the database's locale.
PG_DOCUMENT_FUNCTION: Final = f"""
CREATE FUNCTION agentstore_document(body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $function$
SELECT coalesce(string_agg(
    '''' || left(word, {PG_MAX_WORD}) || ''':' || least(position, 16383), ' '), '')::tsvector
FROM unnest(string_to_array(left(agentstore_words(body), {PG_MAX_TEXT}), ' '))
    WITH ORDINALITY AS w(word, position)
WHERE word <> ''
$function$"""


def pg_lexeme(word: str) -> str:
    """A query word as a quoted tsquery operand (a folded word holds no quote or
    backslash: they are separators)."""
    return "'" + fold(word)[:PG_MAX_WORD] + "'"


# --- PostgreSQL's documents, built in Python -------------------------------------------------
# For bulk loads (copy_database into PostgreSQL): the same tsvector literal that
# agentstore_document() builds, made on the client, about five times faster than the
# server's plpgsql — the server then only parses it. ASCII goes through one byte table
# (separators to spaces, capitals to small letters); then each distinct non-ASCII character
# of the text is replaced by its fold ('' for an accent, ' ' for a separator). Replacing one
# character at a time is exact because a fold is final: no character folds to one that
# folds again, and none folds to a space (tests/test_search.py checks the tables for it).


def _non_ascii_folds() -> dict[str, str]:
    folds = {chr(code): chr(target) for code, target in FOLDS.items() if code > 0x7F}
    folds.update(dict.fromkeys((chr(code) for code in DIACRITICS if code > 0x7F), ""))
    for low, high in SEPARATORS:
        folds.update(dict.fromkeys((chr(code) for code in range(max(low, 0x80), high + 1)), " "))
    return folds


_NON_ASCII_FOLDS: Final = _non_ascii_folds()
_ASCII_FOLDS: Final = bytes(
    ord(" ") if any(low <= code <= high for low, high in SEPARATORS) else FOLDS.get(code, code)
    for code in range(128)
) + bytes(range(128, 256))
_NON_ASCII: Final = re.compile("[^\x00-\x7f]")


def folds_are_final() -> bool:
    """Whether every fold is final (what :func:`pg_document` relies on)."""
    return all(
        _NON_ASCII_FOLDS.get(target, target) == target
        and (target > "\x7f" or _ASCII_FOLDS[ord(target)] == ord(target))
        for target in _NON_ASCII_FOLDS.values()
        if target
    ) and not any(chr(code).isspace() for code in FOLDS.values())


#: Positions as PostgreSQL keeps them: up to 16,383, every later word at the 16,383rd.
_PG_MAX_POSITION: Final = 16_383
_POSITIONS: Final = tuple(f"':{at}" for at in range(1, _PG_MAX_POSITION + 1))


def _document_words(text: str) -> list[str]:
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_FOLDS).decode("ascii").split()
    folded = (
        text.encode("utf-8", "surrogatepass")
        .translate(_ASCII_FOLDS)
        .decode("utf-8", "surrogatepass")
    )
    for char in set(_NON_ASCII.findall(folded)):
        folded = folded.replace(char, _NON_ASCII_FOLDS.get(char, char))
    # Every character Python splits on is a separator, already a space.
    return folded.split()


def pg_document(text: str) -> str:
    """The tsvector literal that ``agentstore_document(text)`` builds in PostgreSQL, exactly
    (tests compare the two for every code point and at every limit)."""
    words = _document_words(text)
    if len(text) > PG_MAX_TEXT:
        # PostgreSQL cuts the words, joined by single spaces, to PG_MAX_TEXT characters
        # (never more than the text's length: a character folds to at most one).
        joined = " ".join(words)
        if len(joined) > PG_MAX_TEXT:
            words = joined[:PG_MAX_TEXT].split()
    if not words:
        return ""
    if max(map(len, words)) > PG_MAX_WORD:
        words = [word[:PG_MAX_WORD] for word in words]
    positions = iter(_POSITIONS)
    if len(words) > _PG_MAX_POSITION:
        positions = chain(_POSITIONS, repeat(_POSITIONS[-1], len(words) - _PG_MAX_POSITION))
    return "'" + " '".join(map(add, words, positions))
