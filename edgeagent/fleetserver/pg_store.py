"""The fleet database on PostgreSQL (psycopg 3): shared by any number of collectors and readers.

Percentiles are computed by the server (``percentile_cont``, the same linear interpolation as
``fleet stats --input``), per device and fleet-wide, so a stats call moves a few hundred numbers
over the wire, not the turns.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Sequence

import psycopg

from edgeagent.fleet.stats import FLEET, STAGES, StageStats, Summary
from edgeagent.fleetserver import migrations
from edgeagent.fleetserver.store import Store, StoreError

_MIGRATION_LOCK = 0x6564_6765  # pg_advisory_xact_lock key: "edge"
# Ordered-set aggregates sort their whole input in memory when it fits: 1 M doubles need ~50 MB.
STATS_WORK_MEM = "256MB"


class PostgresStore(Store):
    dialect = migrations.POSTGRES
    transient = (psycopg.OperationalError,)

    def __init__(self, url: str, connect_timeout: float = 10):
        self.url = url
        try:
            self.conn = psycopg.connect(url, connect_timeout=int(connect_timeout), autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cur = self.conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def _has_table(self, name: str) -> bool:
        return self._execute("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]

    def _lock_migrations(self) -> None:
        self._execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def summarize(self, window: timedelta | None = None, device: str | None = None,
                  now: datetime | None = None) -> Summary:
        since = (now or datetime.now(timezone.utc)) - window if window else None
        where, params = ["TRUE"], []
        if device:
            where.append("device_id = %s")
            params.append(device)
        aggregates = ", ".join(f"count({s}), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY {s})"
                               for s in STAGES)
        with self.transaction():
            self._execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._execute(f"SET LOCAL work_mem = '{STATS_WORK_MEM}'")
            outside = 0
            if since is not None:
                outside = self._execute(f"SELECT count(*) FROM turns WHERE {' AND '.join(where)} AND started_at < %s",
                                        [*params, since])[0][0]
                where.append("started_at >= %s")
                params.append(since)
            query = f"SELECT {{key}}, count(*), {aggregates} FROM turns WHERE {' AND '.join(where)} {{group}}"
            # the fleet-wide sorts and the per-device ones on two server processes (two cores), in
            # one snapshot so both see the same turns
            snapshot = self._execute("SELECT pg_export_snapshot()")[0][0]
            with ThreadPoolExecutor(1) as pool:
                fleet = pool.submit(self._in_snapshot, snapshot, query.format(key="NULL", group=""), params)
                rows = self._execute(query.format(key="device_id", group="GROUP BY device_id ORDER BY device_id"),
                                     params)
                rows = fleet.result() + rows
        stages: list[StageStats] = []
        for n, row in enumerate(rows):
            for k, stage in enumerate(STAGES):
                count, quantiles = row[2 + 2 * k], row[3 + 2 * k]
                if count:
                    stages.append(StageStats(row[0] if n else FLEET, stage, count,
                                             round(quantiles[0], 1), round(quantiles[1], 1)))
        return Summary(rows[0][1], 0, outside, len(rows) - 1, stages)

    def _in_snapshot(self, snapshot: str, sql: str, params: Sequence[Any]) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            conn.execute(f"SET LOCAL work_mem = '{STATS_WORK_MEM}'")
            return conn.execute(sql, params or None).fetchall()

    def close(self) -> None:
        self.conn.close()


__all__ = ["PostgresStore", "StoreError"]
