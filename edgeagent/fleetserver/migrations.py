"""The fleet database schema, as numbered migrations applied in order (SQLite and PostgreSQL).

One SQL text per migration, written once with ``{type}`` placeholders that each dialect fills in,
so the two databases cannot drift apart.  A migration, once released, is never edited: a change
is a new entry at the end.  ``schema_migrations`` records what a database has.

Indexes serve the two questions operators ask: one device over time ((device_id, started_at))
and the whole fleet over a window (started_at).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


@dataclass(frozen=True)
class Dialect:
    """Type names and expressions for one database; SQLite keeps times as epoch milliseconds."""

    name: str
    ts: str
    real: str
    bool: str
    json: str
    blob: str
    id: str
    now: str


SQLITE = Dialect("sqlite", ts="INTEGER", real="REAL", bool="INTEGER", json="TEXT", blob="BLOB",
                 id="INTEGER PRIMARY KEY",
                 now="(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))")
POSTGRES = Dialect("postgresql", ts="timestamptz", real="double precision", bool="boolean", json="jsonb",
                   blob="bytea", id="bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY", now="clock_timestamp()")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "turns, devices, rejects", """
CREATE TABLE turns (
    turn_id text PRIMARY KEY,
    device_id text NOT NULL,
    started_at {ts} NOT NULL,
    outcome text NOT NULL,
    wake_word text,
    wake_score {real},
    speech_ms {real},
    end_of_turn_ms {real},
    end_of_turn_reason text,
    end_of_speech_to_final_ms {real},
    llm_backend text,
    llm_backend_reason text,
    llm_ttft_ms {real},
    llm_tokens integer,
    chunk_wait_ms {real},
    tts_first_chunk_ms {real},
    ttfa_ms {real},
    speak_ms {real},
    barge_in {bool},
    barge_in_stop_ms {real},
    error text,
    extra {json},
    stored_at {ts} NOT NULL DEFAULT {now}
);
CREATE INDEX turns_device_time ON turns (device_id, started_at);
CREATE INDEX turns_time ON turns (started_at);
CREATE TABLE devices (
    device_id text PRIMARY KEY,
    status text NOT NULL,
    status_at {ts} NOT NULL
);
CREATE TABLE rejects (
    id {id},
    received_at {ts} NOT NULL DEFAULT {now},
    topic text NOT NULL,
    reason text NOT NULL,
    payload {blob}
);
CREATE INDEX rejects_time ON rejects (received_at);
"""),
)

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at {ts} NOT NULL DEFAULT {now}
)"""


def render(sql: str, dialect: Dialect) -> list[str]:
    """The statements of one migration for ``dialect``."""
    text = sql.format(**{k: getattr(dialect, k) for k in ("ts", "real", "bool", "json", "blob", "id", "now")})
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


def pending(applied: set[int]) -> list[Migration]:
    return [m for m in MIGRATIONS if m.version not in applied]


LATEST = MIGRATIONS[-1].version
