"""The server-side verbs of ``edgeagent fleet`` (edgeagent.fleetserver): ``collect`` and ``stats --db``.

Kept apart from the operator's MQTT verbs; heavy imports (psycopg, prometheus_client) happen
inside the handlers so ``edgeagent --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta

from edgeagent.config import MqttConfig
from edgeagent.fleet.stats import Summary

DB_ENV = "EDGEAGENT_FLEET_DB"
log = logging.getLogger("edgeagent.fleetserver")


def add_collect_parser(actions: argparse._SubParsersAction) -> None:
    from edgeagent.fleetserver.settings import CollectorSettings

    d = CollectorSettings()
    p = actions.add_parser("collect", help="store every device's traces and status in a database (long-running)",
                           description="Subscribe to all telemetry with an MQTT 5 shared subscription and store it: "
                                       "run as many collectors as you like, with one --client-id each.")
    p.add_argument("--db", help=f"sqlite:///path/fleet.db or postgresql://user@host/db (default ${DB_ENV})")
    p.add_argument("--group", default=d.group, help="shared-subscription group: collectors in one group split the load")
    p.add_argument("--client-id", help="stable per collector: the broker keeps its session "
                                       f"(default <login>:{d.client_id}; a name without ':' gets the login prefixed)")
    p.add_argument("--session-expiry", type=int, default=d.session_expiry_s, metavar="SECONDS",
                   help="how long the broker keeps this collector's queue while it is away")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="messages per transaction at most")
    p.add_argument("--batch-wait", type=float, default=d.batch_wait_s, metavar="SECONDS",
                   help="wait this long for more messages before committing a batch")
    p.add_argument("--metrics-port", type=int, default=9464, help="Prometheus /metrics port (0: any free port, -1: off)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address to serve metrics on")
    p.add_argument("--no-device-histograms", action="store_true",
                   help="one set of latency histograms for the fleet instead of one per device (~55 series a device)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM)")


def database_url(flag: str | None) -> str:
    url = flag or os.environ.get(DB_ENV)
    if not url:
        raise ValueError(f"no database: give --db or set ${DB_ENV} (e.g. sqlite:///var/lib/edgeagent-fleet/fleet.db)")
    return url


def run_collect(args: argparse.Namespace, broker: MqttConfig) -> int:
    from edgeagent.fleetserver.collector import Collector
    from edgeagent.fleetserver.database import open_store
    from edgeagent.fleetserver.metrics import Metrics
    from edgeagent.fleet.operator import client_id
    from edgeagent.fleetserver.settings import CollectorSettings
    from edgeagent.fleetserver.store import StoreError
    from edgeagent.runtime.service import notify

    url = database_url(args.db)
    if args.batch_size < 1 or args.batch_wait < 0:
        raise ValueError("--batch-size must be >= 1 and --batch-wait >= 0")
    name = args.client_id or CollectorSettings().client_id
    settings = CollectorSettings(group=args.group, client_id=name if ":" in name else client_id(broker, name),
                                 session_expiry_s=args.session_expiry,
                                 batch_size=args.batch_size, batch_wait_s=args.batch_wait,
                                 receive_maximum=max(4 * args.batch_size, 100))
    metrics = Metrics(device_histograms=not args.no_device_histograms)
    try:
        if args.metrics_port >= 0:
            port = metrics.serve(args.metrics_port, args.metrics_host)
            log.info("collector: metrics on http://%s:%d/metrics", args.metrics_host, port)
    except OSError as exc:
        print(f"edgeagent fleet collect: cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc}",
              file=sys.stderr)
        return 1
    collector = Collector(broker, lambda: open_store(url), settings, metrics)
    try:
        collector.start()
    except StoreError as exc:
        metrics.close()
        print(f"edgeagent fleet collect: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: stop.set())
    try:
        log.info("collector: %s -> %s", ", ".join(collector.subscriptions), url.split("://")[0])
        notify("READY=1")
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.wait(1.0):
            if deadline is not None and time.monotonic() >= deadline:
                break
            notify("STATUS=" + _status_line(collector.counters, collector.connected.is_set()))
    finally:
        notify("STOPPING=1")
        collector.stop()
        metrics.close()
    log.info("collector: stopped; %s", _status_line(collector.counters, False))
    return 0


def _status_line(c: dict[str, int], connected: bool) -> str:
    return (f"{'connected' if connected else 'not connected'}; stored {c['stored']}, duplicates {c['duplicates']}, "
            f"rejected {c['rejected']}, database errors {c['db_errors']}")


def db_summary(flag: str | None, window: timedelta | None, device: str | None) -> Summary:
    """``fleet stats --db``: read-only; a database the collector never created is an error, not a new file."""
    from edgeagent.fleet.operator import FleetError
    from edgeagent.fleetserver.database import open_store
    from edgeagent.fleetserver.store import StoreError

    try:
        store = open_store(database_url(flag), migrate=False)
    except StoreError as exc:
        raise FleetError(str(exc)) from None
    try:
        if store.version() == 0:
            raise FleetError("the database has no fleet tables yet (start `edgeagent fleet collect` on it first)")
        return store.summarize(window, device)
    finally:
        store.close()
