"""``edgeagent fleet collect`` against real mosquitto and real SQLite / PostgreSQL: what it stores,
what it refuses, what it serves to Prometheus, and that no trace is lost or stored twice when a
collector is stopped, SIGKILLed with uncommitted messages, or its database goes away."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys

from benchmarks.broker import REPO
from edgeagent.config import MqttConfig
from edgeagent.fleetserver.collector import Collector
from edgeagent.fleetserver.database import open_store
from edgeagent.fleetserver.settings import CollectorSettings
from tests.collector_support import (COLLECTOR, CollectorProcess, add_login, db_url, make_trace, metric,  # noqa: F401
                                     pg_server, pg_url, publish_all, scrape, trace_message, wait_for)
from tests.fleet_support import Watcher


def counts(url: str) -> dict[str, int]:
    store = open_store(url, migrate=False)
    try:
        return store.counts()
    finally:
        store.close()


def device_login(broker, device: str) -> Watcher:
    """A client logged in as the device itself: the ACL lets it publish only under its own prefix."""
    broker.add_device(device, f"pw-{device}")
    return Watcher(broker, [], user=(device, f"pw-{device}"), port=broker.device_port)


def in_process_collector(broker, url: str, **settings) -> Collector:
    add_login(broker, *COLLECTOR)
    mqtt = MqttConfig(host="127.0.0.1", port=broker.port, username=COLLECTOR[0], password=COLLECTOR[1], keepalive_s=5)
    collector = Collector(mqtt, lambda: open_store(url), CollectorSettings(client_id="test-collector", **settings))
    collector.start()
    assert collector.wait_connected(10)
    return collector


def test_stores_turns_once_keeps_rejects_tracks_status_and_serves_metrics(broker, db_url):  # noqa: F811
    collector = in_process_collector(broker, db_url)
    port = collector.metrics.serve(0)
    porch = device_login(broker, "porch")
    try:
        traces = [make_trace("porch", 1), make_trace("porch", 1),  # a QoS 1 redelivery
                  make_trace("porch", 2, outcome="barged_in", barge_in=True, barge_in_stop_ms=12.0),
                  make_trace("porch", 3, outcome="error", error="llm: timed out", ttfa_ms=None)]
        publish_all(porch.client, [trace_message(t) for t in traces] + [
            ("edgeagent/porch/telemetry/turn", b"{truncated"),
            ("edgeagent/porch/telemetry/turn", json.dumps(make_trace("porch", 4, ttfa_ms=-1)).encode())])
        porch.client.publish("edgeagent/porch/status", b"online", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: counts(db_url) == {"turns": 3, "devices": 1, "rejects": 2}, 15, "3 turns, 1 device, 2 rejects")
        store = open_store(db_url, migrate=False)
        reasons = sorted(reason for _t, reason, _p in store.rejects())
        store.close()
        assert reasons[0].startswith("not JSON") and reasons[1].startswith("ttfa_ms must be a number from 0")

        def when_online() -> str | None:
            text = scrape(port)
            return text if metric(text, "edgeagent_devices_online") == 1 else None

        text = wait_for(when_online, 10, "devices online = 1")
        assert metric(text, "edgeagent_turns_total", device="porch", outcome="answered") == 1
        assert metric(text, "edgeagent_turns_total", device="porch", outcome="barged_in") == 1
        assert metric(text, "edgeagent_turns_total", device="porch", outcome="error") == 1
        assert metric(text, "edgeagent_turns_total", device="porch", outcome="no_speech") == 0
        assert metric(text, "edgeagent_turn_ttfa_seconds_count", device="porch") == 2
        assert metric(text, "edgeagent_turn_ttfa_seconds_sum", device="porch") == (901 + 902) / 1000
        assert metric(text, "edgeagent_turn_barge_in_stop_seconds_bucket", device="porch", le="0.05") == 1
        assert metric(text, "edgeagent_turn_stt_seconds_count", device="porch") == 3
        assert metric(text, "edgeagent_device_online", device="porch") == 1
        assert metric(text, "edgeagent_collector_duplicate_turns_total") == 1
        assert metric(text, "edgeagent_collector_messages_total", kind="reject") == 2
        assert metric(text, "edgeagent_collector_pending") == 0

        porch.client.publish("edgeagent/porch/status", b"offline", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: metric(scrape(port), "edgeagent_device_online", device="porch") == 0, 10, "porch offline")
        assert metric(scrape(port), "edgeagent_devices_online") == 0
    finally:
        porch.close()
        collector.stop()
        collector.metrics.close()


def test_traces_published_while_no_collector_runs_wait_for_it(broker, tmp_path):
    url = f"sqlite:///{tmp_path}/fleet.db"
    collector = CollectorProcess(broker, url, tmp_path, "c1").start()
    assert collector.stop() == 0 and "stopped; not connected; stored 0" in collector.log()  # SIGTERM: clean exit
    kitchen = device_login(broker, "kitchen")
    publish_all(kitchen.client, [trace_message(make_trace("kitchen", n)) for n in range(20)])
    kitchen.close()
    collector.start()  # the same client id: the broker kept its session and the 20 traces
    try:
        wait_for(lambda: counts(url)["turns"] == 20, 20, "20 stored turns")
    finally:
        collector.stop()
    assert "session resumed" in collector.log()


def test_a_collector_killed_before_its_commit_loses_nothing(broker, tmp_path):
    url = f"sqlite:///{tmp_path}/fleet.db"
    collector = CollectorProcess(broker, url, tmp_path, "c1").start()
    blocker = sqlite3.connect(tmp_path / "fleet.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the collector's commits now wait
    try:
        attic = device_login(broker, "attic")
        publish_all(attic.client, [trace_message(make_trace("attic", n)) for n in range(30)])
        attic.close()
        # it holds all 30, none committed, none acknowledged ...
        wait_for(lambda: metric(collector.metrics(), "edgeagent_collector_pending") == 30, 15, "30 pending messages")
        collector.kill()  # ... and dies (SIGKILL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert counts(url)["turns"] == 0
    collector.start()  # unacknowledged, so the broker delivers them again
    try:
        wait_for(lambda: counts(url)["turns"] == 30, 20, "30 stored turns after the restart")
    finally:
        collector.stop()


def test_two_collectors_share_the_load_one_sigkilled_midway_none_lost(broker, tmp_path, pg_url):  # noqa: F811
    first = CollectorProcess(broker, pg_url, tmp_path, "c1").start()
    second = CollectorProcess(broker, pg_url, tmp_path, "c2").start()
    publisher = Watcher(broker, [])  # the operator login may publish for many devices: 50 simulated
    traces = [make_trace(f"dev{n % 50}", n) for n in range(1500)]
    try:
        publish_all(publisher.client, [trace_message(t) for t in traces[:500]])
        first.kill()
        publish_all(publisher.client, [trace_message(t) for t in traces[500:1000]])
        first.start()
        publish_all(publisher.client, [trace_message(t) for t in traces[1000:]])
        wait_for(lambda: counts(pg_url)["turns"] == 1500, 60, "1500 stored turns")
        assert counts(pg_url) == {"turns": 1500, "devices": 0, "rejects": 0}
        stored_by_second = metric(second.metrics(), "edgeagent_collector_messages_total", kind="turn")
        assert 0 < stored_by_second < 1500  # the group split the load
    finally:
        publisher.close()
        first.stop()
        second.stop()


def test_database_outage_holds_messages_unacknowledged_until_it_is_back(broker, pg_server, pg_url):  # noqa: F811
    collector = in_process_collector(broker, pg_url)
    cellar = device_login(broker, "cellar")
    try:
        publish_all(cellar.client, [trace_message(make_trace("cellar", 0))])
        wait_for(lambda: counts(pg_url)["turns"] == 1, 10, "the first turn")
        pg_server.stop()
        try:
            publish_all(cellar.client, [trace_message(make_trace("cellar", n)) for n in range(1, 21)])
            wait_for(lambda: collector.counters["db_errors"] > 0, 10, "a failed write")
            assert collector.counters["stored"] == 1
        finally:
            pg_server.start()
        wait_for(lambda: collector.counters["stored"] == 21, 40, "21 stored turns after the database came back")
        assert counts(pg_url)["turns"] == 21
    finally:
        cellar.close()
        collector.stop()


def test_fleet_wide_histograms_instead_of_per_device_ones():
    from prometheus_client import generate_latest

    from edgeagent.fleetserver.metrics import ALL_DEVICES, Metrics
    from edgeagent.fleetserver.traces import parse_message

    metrics = Metrics(device_histograms=False)
    turns = [parse_message(*trace_message(make_trace(f"dev{n}", n))).turn for n in range(3)]
    metrics.stored(turns)
    text = generate_latest(metrics.registry).decode()
    assert metric(text, "edgeagent_turn_ttfa_seconds_count", device=ALL_DEVICES) == 3
    assert metric(text, "edgeagent_turn_ttfa_seconds_count", device="dev1") is None
    assert metric(text, "edgeagent_turns_total", device="dev1", outcome="answered") == 1  # outcomes stay per device



def test_a_collector_that_cannot_start_says_why(broker, tmp_path):
    def collect(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgeagent", "fleet", "--host", "127.0.0.1", "--port",
                               str(broker.port), "collect", "--duration", "1", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60)

    no_db = collect("--db", "postgresql://nobody@127.0.0.1:1/fleet", "--metrics-port", "-1")
    assert no_db.returncode == 1 and "cannot connect to PostgreSQL" in no_db.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = collect("--db", f"sqlite:///{tmp_path}/fleet.db", "--metrics-port", str(busy.getsockname()[1]))
    assert taken.returncode == 1 and "cannot serve metrics on 127.0.0.1:" in taken.stderr
    away = subprocess.run([sys.executable, "-m", "edgeagent", "fleet", "--host", "127.0.0.1", "--port", "1", "collect",
                           "--duration", "2", "--db", f"sqlite:///{tmp_path}/fleet.db", "--metrics-port", "-1"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert away.returncode == 0 and away.stderr.count("cannot reach the broker at 127.0.0.1:1") == 1
