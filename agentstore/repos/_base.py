"""What every repository builds on: a source of connections, and rows turned into models.

A repository never commits. It asks its :class:`Database` for a unit of work — ``reading()``
for a consistent snapshot, ``writing()`` for a write transaction — and the database decides
what that is: the store opens one short transaction per call; a
:class:`~agentstore.store.Transaction` hands every call its one open connection, so that
several calls commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentstore.models import Base

M = TypeVar("M", bound=Base)


class Database(Protocol):
    """Where repositories get their connection from."""

    dialect_name: str

    def reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a read transaction (one snapshot for the whole unit)."""
        ...

    def writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a write transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        ...


def build(cls: type[M], values: Mapping[str, Any]) -> M:
    """A detached model instance from column values, without running ``__init__``.

    Every attribute is filled, so reading one never touches the database.
    """
    obj: M = cls._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    obj.__dict__.update(values)
    return obj


def build_all(cls: type[M], rows: Iterable[sa.Row[Any]]) -> list[M]:
    """:func:`build` for every row of a result."""
    new = cls._sa_class_manager.new_instance  # type: ignore[attr-defined]
    out: list[M] = []
    for row in rows:
        obj = new()
        obj.__dict__.update(row._mapping)
        out.append(obj)
    return out


def values_of(obj: Base, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The column values of a model instance, by column name."""
    skipped = set(skip)
    return {
        column.key: getattr(obj, column.key)
        for column in obj.__table__.columns
        if column.key not in skipped
    }
