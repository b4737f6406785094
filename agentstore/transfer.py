"""Moving data: JSON Lines export and import, and copying a whole database (SPEC §10)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from agentstore.store import Store

__all__ = ["FORMAT_VERSION", "copy_database", "export_jsonl", "import_jsonl"]

FORMAT_VERSION = 1


async def export_jsonl(
    store: Store,
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    session_ids: Sequence[str] | None = None,
    include_secrets: bool = False,
) -> dict[str, int]:
    """Write JSON Lines: a header, then one object per row; returns counts per type."""
    raise NotImplementedError


async def import_jsonl(
    store: Store, source: str | os.PathLike[str] | BinaryIO, *, on_conflict: str = "error"
) -> dict[str, int]:
    """Read a file :func:`export_jsonl` wrote, in one transaction; returns counts per type."""
    raise NotImplementedError


async def copy_database(
    source: object, dest: object, *, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Copy a whole database into an empty one at the same revision; returns rows per table."""
    raise NotImplementedError
