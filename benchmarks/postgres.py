"""A real PostgreSQL server for the fleet-server tests and the scale benchmark (bench_fleet_scale).

Debian's ``postgresql`` package brings the binaries (``/usr/lib/postgresql/<version>/bin``); the
server runs from a fresh ``initdb`` in a temp dir on a free loopback port.  PostgreSQL refuses to
run as root, and the tests run as root on CI: then the cluster belongs to the ``postgres`` user
(created by the package), or ``nobody``, and every server command runs through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from benchmarks.broker import free_port

# durable=False (tests): no fsync, the data is thrown away anyway; the benchmark keeps the defaults
FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian package 'postgresql'; make install adds it)")
    return Path(found[-1]).parent


def _server_user() -> str | None:
    """None when we are not root (run as ourselves); else a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists to own the cluster")


class PgServer:
    """initdb + pg_ctl on 127.0.0.1:<free port>; ``url(db)`` for clients; ``stop()`` removes it all."""

    def __init__(self, durable: bool = False, settings: dict[str, str] | None = None):
        self.bin = pg_bindir()
        self.user = _server_user()
        # not under pytest's tmp dirs: they are 0700 root, which the server user cannot enter
        self.dir = Path(tempfile.mkdtemp(prefix="edgeagent-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.options = [] if durable else list(FAST)
        for key, value in (settings or {}).items():
            self.options += ["-c", f"{key}={value}"]
        if self.user:
            shutil.chown(self.dir, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout, cwd=self.dir)

    def start(self) -> None:
        opts = " ".join(["-p", str(self.port), "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", *self.options])
        try:
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", opts, "-w",
                      "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{self.log()}") from None

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
