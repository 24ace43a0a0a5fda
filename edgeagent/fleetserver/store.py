"""The fleet database: one interface over SQLite (embedded default) and PostgreSQL (a fleet).

``write`` stores a batch of parsed messages in one transaction: turns inserted once per turn id
(a redelivered trace changes nothing), device status upserted (newest wins), rejects appended.
It returns the turns that were new, so metrics count each turn once.  If the database refuses
the batch for its data, the batch is written again row by row and the row it refuses becomes a
reject with the database's reason: one bad trace never blocks the others.  Connection-level
failures (``transient``) propagate: the caller keeps the batch unacknowledged and retries.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from edgeagent.fleet.stats import Summary
from edgeagent.fleetserver import migrations
from edgeagent.fleetserver.traces import COLUMNS, Parsed, TurnRow

log = logging.getLogger(__name__)

ROWS_PER_STATEMENT = 1000  # 23 parameters a row: well under both databases' limits
INSERT_TURNS = (f"INSERT INTO turns ({', '.join(COLUMNS)}) VALUES {{rows}} "
                 "ON CONFLICT (turn_id) DO NOTHING RETURNING turn_id")
_UPSERT_DEVICE = ("INSERT INTO devices (device_id, status, status_at) VALUES (%s, %s, %s) "
                  "ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at "
                  "WHERE devices.status_at <= excluded.status_at")
_INSERT_REJECT = "INSERT INTO rejects (received_at, topic, reason, payload) VALUES (%s, %s, %s, %s)"
TABLES = ("turns", "devices", "rejects")


class StoreError(RuntimeError):
    """A database URL we cannot use, or a database we cannot open."""


class Store(ABC):
    """A connection to the fleet database; not thread-safe (one per thread)."""

    dialect: migrations.Dialect
    transient: tuple[type[BaseException], ...] = ()

    # ---------------------------------------------------------------- dialect hooks

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement written with ``%s`` placeholders; the rows it returns."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Commit on exit, roll back on error; nested use is a savepoint."""

    @abstractmethod
    def _has_table(self, name: str) -> bool: ...

    @abstractmethod
    def _lock_migrations(self) -> None:
        """Inside the migration transaction: keep other collectors starting now out."""

    @abstractmethod
    def summarize(self, window: timedelta | None = None, device: str | None = None,
                  now: datetime | None = None) -> Summary:
        """``fleet stats`` from the database: P50/P90 per stage, per device and fleet-wide."""

    @abstractmethod
    def close(self) -> None: ...

    def _ts(self, value: datetime) -> Any:
        return value

    # ---------------------------------------------------------------- schema

    def migrate(self) -> list[int]:
        """Apply pending migrations (each in its own transaction); the versions applied."""
        done = []
        with self.transaction():
            self._lock_migrations()
            self._execute(migrations.VERSION_TABLE.format(ts=self.dialect.ts, now=self.dialect.now))
            applied = {v for (v,) in self._execute("SELECT version FROM schema_migrations")}
            for migration in migrations.pending(applied):
                with self.transaction():
                    for stmt in migrations.render(migration.sql, self.dialect):
                        self._execute(stmt)
                    self._execute("INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                                  (migration.version, migration.description))
                done.append(migration.version)
                log.info("fleet db: applied migration %d (%s)", migration.version, migration.description)
        return done

    def version(self) -> int:
        """The schema version; 0 for a database without the fleet tables."""
        if not self._has_table("schema_migrations"):
            return 0
        return self._execute("SELECT max(version) FROM schema_migrations")[0][0] or 0

    # ---------------------------------------------------------------- writing

    def write(self, items: Sequence[Parsed]) -> list[TurnRow]:
        """Store a batch in one transaction; the turns that were not stored before."""
        try:
            with self.transaction():
                return self._write(items)
        except self.transient:
            raise
        except Exception as exc:  # the data: find the row the database refuses
            log.warning("fleet db: batch of %d refused (%s); storing row by row", len(items), exc)
        new: list[TurnRow] = []
        with self.transaction():
            for item in items:
                try:
                    with self.transaction():
                        new += self._write([item])
                except self.transient:
                    raise
                except Exception as exc:
                    item.reject(f"database refused it: {type(exc).__name__}: {exc}".strip()[:500])
                    self._write([item])
        return new

    def _write(self, items: Iterable[Parsed]) -> list[TurnRow]:
        turns: dict[str, TurnRow] = {}
        statuses: dict[str, Parsed] = {}
        for item in items:
            if item.turn is not None:
                turns.setdefault(item.turn.turn_id, item.turn)  # a redelivery inside one batch
            elif item.status is not None:
                statuses[item.device_id] = item  # the latest in the batch wins
            else:
                self._execute(_INSERT_REJECT, (self._ts(item.received_at), item.topic, item.reason, item.payload))
        for item in statuses.values():
            self._execute(_UPSERT_DEVICE, (item.device_id, item.status, self._ts(item.received_at)))
        rows = list(turns.values())
        new = self._insert_turns(rows) if rows else set()
        return [row for row in rows if row.turn_id in new]

    def _insert_turns(self, rows: list[TurnRow]) -> set[str]:
        """Insert what is not there yet; the turn ids inserted (multi-row statements: SQLite's fast path)."""
        new: set[str] = set()
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start:start + ROWS_PER_STATEMENT]
            placeholders = ", ".join(["(" + ", ".join(["%s"] * len(COLUMNS)) + ")"] * len(chunk))
            params = [v for row in chunk for v in self._row(row)]
            new.update(turn_id for (turn_id,) in self._execute(INSERT_TURNS.format(rows=placeholders), params))
        return new

    def _row(self, row: TurnRow) -> tuple[Any, ...]:
        values = row.values()
        return (*values[:2], self._ts(values[2]), *values[3:])

    # ---------------------------------------------------------------- reading

    def counts(self) -> dict[str, int]:
        return {table: self._execute(f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}

    def devices(self) -> dict[str, str]:
        """device id -> last known status (``online`` / ``offline``)."""
        return dict(self._execute("SELECT device_id, status FROM devices"))

    def rejects(self, limit: int = 100) -> list[tuple[str, str, bytes]]:
        """The latest rejects: (topic, reason, payload)."""
        return [(t, r, bytes(p)) for t, r, p in
                self._execute("SELECT topic, reason, payload FROM rejects ORDER BY id DESC LIMIT %s", (limit,))]
