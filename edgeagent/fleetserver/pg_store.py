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
from edgeagent.fleetserver.store import INSERT_TURNS, Store, StoreError
from edgeagent.fleetserver.traces import COLUMNS, TurnRow

_MIGRATION_LOCK = 0x6564_6765  # pg_advisory_xact_lock key: "edge"
# Ordered-set aggregates sort their whole input in memory when it fits: 1 M doubles need ~50 MB.
STATS_WORK_MEM = "256MB"


def _stats_queries(where: str) -> list[str]:
    """Fleet-wide (two halves of the stages) and per device (two halves of the devices, by hash;
    grouped in byte order, which is fast in any database locale): count and P50/P90 of each stage."""
    def aggregates(stages: tuple[str, ...]) -> str:
        return ", ".join(f"count({s}), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY {s})" for s in stages)

    half = len(STAGES) // 2 + 1
    fleet = [f"SELECT count(*), {aggregates(part)} FROM turns WHERE {where}" for part in (STAGES[:half], STAGES[half:])]
    devices = [f'SELECT device_id COLLATE "C", {aggregates(STAGES)} FROM turns WHERE {where} '
               f"AND (hashtext(device_id) & 1) = {k} GROUP BY 1" for k in (0, 1)]
    return fleet + devices


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

    def _insert_turns(self, rows: list[TurnRow]) -> set[str]:
        """One prepared single-row INSERT, pipelined for the batch: ~10 us of client CPU a row, where
        one giant multi-row statement costs ~90 us (every value formatted into one text query)."""
        with self.conn.cursor() as cur:
            cur.executemany(INSERT_TURNS.format(rows="(" + ", ".join(["%s"] * len(COLUMNS)) + ")"),
                            [row.values() for row in rows], returning=True)
            new: set[str] = set()
            while True:
                new.update(turn_id for (turn_id,) in cur.fetchall())
                if not cur.nextset():
                    return new

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
        with self.transaction():
            self._execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._execute(f"SET LOCAL work_mem = '{STATS_WORK_MEM}'")
            outside = 0
            if since is not None:
                outside = self._execute(f"SELECT count(*) FROM turns WHERE {' AND '.join(where)} AND started_at < %s",
                                        [*params, since])[0][0]
                where.append("started_at >= %s")
                params.append(since)
            queries = _stats_queries(" AND ".join(where))
            # PostgreSQL runs no ordered-set aggregate in parallel: four server processes share the
            # sorts instead, in one exported snapshot so that all four see the same turns
            snapshot = self._execute("SELECT pg_export_snapshot()")[0][0]
            with ThreadPoolExecutor(len(queries) - 1) as pool:
                others = [pool.submit(self._in_snapshot, snapshot, sql, params) for sql in queries[1:]]
                results = [self._execute(queries[0], params)] + [f.result() for f in others]
        (fleet_a,), (fleet_b,), *per_device = results
        rows = [(FLEET, fleet_a[1:] + fleet_b[1:])] + sorted((r[0], r[1:]) for part in per_device for r in part)
        stages: list[StageStats] = []
        for name, values in rows:
            for k, stage in enumerate(STAGES):
                count, quantiles = values[2 * k], values[2 * k + 1]
                if count:
                    stages.append(StageStats(name, stage, count, round(quantiles[0], 1), round(quantiles[1], 1)))
        return Summary(fleet_a[0], 0, outside, len(rows) - 1, stages)

    def _in_snapshot(self, snapshot: str, sql: str, params: Sequence[Any]) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            conn.execute(f"SET LOCAL work_mem = '{STATS_WORK_MEM}'")
            return conn.execute(sql, params or None).fetchall()

    def close(self) -> None:
        self.conn.close()

