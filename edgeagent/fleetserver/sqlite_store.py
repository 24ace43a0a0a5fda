"""The embedded fleet database: one SQLite file, zero setup, for a collector on one host.

WAL journal with ``synchronous=FULL`` (a committed batch survives a power cut, which is what
acknowledging it to the broker promises) and a busy timeout, so a ``fleet stats`` reader or a
second collector on the same host waits instead of failing.  Times are epoch milliseconds.
SQLite has no percentile function: ``summarize`` reads the stage columns once and sorts in Python.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from edgeagent.fleet.stats import STAGES, Summary, series_stats
from edgeagent.fleetserver import migrations
from edgeagent.fleetserver.store import Store, StoreError


def epoch_ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def sqlite_path(url: str) -> Path:
    """``sqlite:///abs.db`` -> /abs.db; ``sqlite:rel.db`` and ``rel.db`` -> rel.db."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        if not rest.startswith("/"):
            raise StoreError(f"{url!r}: write sqlite:///absolute/path.db or sqlite:relative/path.db")
        return Path(rest)
    return Path(url.removeprefix("sqlite:"))


class SqliteStore(Store):
    dialect = migrations.SQLITE
    # "database is locked" and I/O errors pass; constraint and type errors are the data's
    transient = (sqlite3.OperationalError,)

    def __init__(self, url: str, create: bool = True):
        self.path = sqlite_path(url)
        if not create and not self.path.is_file():
            raise StoreError(f"no SQLite database at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from None
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self._depth = 0

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql.replace("%s", "?"), params).fetchall()

    def _ts(self, value: datetime) -> int:
        return epoch_ms(value)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        depth = self._depth
        name = f"sp{depth}"
        self.conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK" if depth == 0 else f"ROLLBACK TO {name}")
            if depth:
                self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self.conn.execute("COMMIT" if depth == 0 else f"RELEASE {name}")
        finally:
            self._depth = depth

    def _has_table(self, name: str) -> bool:
        return bool(self._execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", (name,)))

    def _lock_migrations(self) -> None:
        pass  # BEGIN IMMEDIATE already holds the write lock

    def summarize(self, window: timedelta | None = None, device: str | None = None,
                  now: datetime | None = None) -> Summary:
        since = epoch_ms((now or datetime.now(timezone.utc)) - window) if window else None
        where, params = [], []
        if device:
            where.append("device_id = ?")
            params.append(device)
        outside = 0
        self.conn.execute("BEGIN")  # one snapshot for the count and the values (WAL: readers never block)
        try:
            if since is not None:
                outside = self.conn.execute(" ".join(["SELECT count(*) FROM turns WHERE started_at < ?",
                                                      *(f"AND {w}" for w in where)]), [since, *params]).fetchone()[0]
                where.append("started_at >= ?")
                params.append(since)
            sql = (f"SELECT device_id, {', '.join(STAGES)} FROM turns"
                   + (" WHERE " + " AND ".join(where) if where else ""))
            series: dict[str, dict[str, list[float]]] = {}
            turns = 0
            for row in self.conn.execute(sql, params):
                turns += 1
                per_stage = series.get(row[0])
                if per_stage is None:
                    per_stage = series[row[0]] = {stage: [] for stage in STAGES}
                for stage, value in zip(STAGES, row[1:]):
                    if value is not None:
                        per_stage[stage].append(value)
        finally:
            self.conn.execute("COMMIT")
        return Summary(turns, 0, outside, len(series), series_stats(series))

    def close(self) -> None:
        self.conn.close()
