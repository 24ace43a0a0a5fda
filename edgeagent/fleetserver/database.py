"""Open the fleet database named by a URL: SQLite (embedded default) or PostgreSQL (a fleet)."""

from __future__ import annotations

from edgeagent.fleetserver.store import Store, StoreError


def open_store(url: str, migrate: bool = True) -> Store:
    """``sqlite:///abs/path.db``, ``sqlite:relative.db`` or a path ending in .db/.sqlite;
    ``postgresql://user@host:port/dbname`` (password from libpq's PGPASSWORD/PGPASSFILE).
    ``migrate``: bring the schema up to date (the collector); else open an existing database only."""
    if url.startswith(("postgresql://", "postgres://")):
        from edgeagent.fleetserver.pg_store import PostgresStore

        store: Store = PostgresStore(url)
    elif url.startswith("sqlite:") or url.endswith((".db", ".sqlite", ".sqlite3")):
        from edgeagent.fleetserver.sqlite_store import SqliteStore

        store = SqliteStore(url, create=migrate)
    else:
        raise StoreError(f"database {url!r}: use sqlite:///path/fleet.db or postgresql://user@host/dbname")
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
