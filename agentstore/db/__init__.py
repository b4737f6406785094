"""The store's data path: how every call reaches the database.

* :mod:`~agentstore.db.statements` — SQLAlchemy statements compiled once per backend, their
  arguments encoded and their rows built into models by code generated from the column
  types' codecs (:func:`agentstore.types.codec`);
* :mod:`~agentstore.db.base` — the connection a unit of work sees (:class:`Conn`);
* :mod:`~agentstore.db.sqlite` and :mod:`~agentstore.db.postgres` — where units run: threads
  that own SQLite connections, tasks that own asyncpg connections; never the caller's task;
* :mod:`~agentstore.db.groups` — group commit of appends;
* :mod:`~agentstore.db.errors` — driver errors translated, by code, in one place.
"""

from agentstore.db.base import APPEND_COLUMNS, Conn, Unit, lock_key
from agentstore.db.statements import Query, Statement, bind

__all__ = ["APPEND_COLUMNS", "Conn", "Query", "Statement", "Unit", "bind", "lock_key"]
