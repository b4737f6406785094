"""Telling integrity errors apart, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.exc import IntegrityError


def integrity_kind(exc: Exception) -> Literal["foreign_key", "unique", "other"]:
    """Which constraint an integrity error (SQLAlchemy's or the driver's) broke."""
    text = str(exc.orig if isinstance(exc, IntegrityError) else exc).lower()
    if "foreign key" in text:
        return "foreign_key"
    if "unique" in text or "duplicate key" in text or "primary key" in text:
        return "unique"
    return "other"
