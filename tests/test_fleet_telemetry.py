"""Turn telemetry through broker outages and daemon restarts: in order, nothing lost."""

from __future__ import annotations

import asyncio
import json
import time

from edgeagent.config import load_config
from edgeagent.fleet.device import StandaloneDevice
from edgeagent.fleet.link import FleetLink
from edgeagent.fleet.spool import Spool
from edgeagent.turn.trace import TurnTrace
from tests.fleet_support import Watcher, device_config

TOPIC = "edgeagent/{}/telemetry/turn"


def trace(dev: str, n: int) -> TurnTrace:
    return TurnTrace(device_id=dev, turn_id=f"turn-{n:04d}", ttfa_ms=400.0 + n, llm_backend="local",
                     transcript="what time is it", reply="It is noon.")


def make_link(config) -> FleetLink:
    device = StandaloneDevice(config)
    link = FleetLink(config, device, on_config=device.apply_config)
    device.device_state.attach(link)
    return link


def collect(watcher: Watcher, topic: str, want: set[str], timeout: float = 30) -> list[dict]:
    """Traces in arrival order until every turn id in ``want`` has been seen."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while not want <= {t["turn_id"] for t in got}:
        got.append(json.loads(watcher.get(lambda m: m.topic == topic, deadline - time.monotonic()).payload))
    return got


def dedupe(traces: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for t in traces:
        seen.setdefault(t["turn_id"])
    return list(seen)


async def until(predicate, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def test_traces_during_broker_outage_arrive_in_order_after_restart(tmp_path, broker):
    dev = "hall"
    config = load_config(device_config(tmp_path, broker, dev))
    # the collector keeps a persistent session, so the broker queues for it while it reconnects
    collector = Watcher(broker, [TOPIC.format("+")], client_id="collector", clean_start=False, session_expiry=3600)

    async def scenario() -> FleetLink:
        link = make_link(config)
        link.start()
        await until(lambda: link.connected)
        for n in range(5):
            link.publish_trace(trace(dev, n))
        assert await asyncio.to_thread(link.outbox.wait_delivered, 10)
        broker.stop()
        for n in range(5, 10):  # before the link has noticed the outage
            link.publish_trace(trace(dev, n))
        await until(lambda: not link.connected)
        for n in range(10, 30):
            link.publish_trace(trace(dev, n))
        await until(lambda: len(link.outbox.spool) >= 20)
        spooled = sorted(p.name for p in (config.state_dir / "fleet" / "telemetry-spool").glob("*.json"))
        assert len(spooled) >= 20  # on disk, not only in memory
        broker.start()
        await until(lambda: link.connected, 30)
        for n in range(30, 35):
            link.publish_trace(trace(dev, n))
        assert await asyncio.to_thread(link.outbox.wait_delivered, 30)
        await link.stop()
        return link

    link = asyncio.run(scenario())
    try:
        got = collect(collector, TOPIC.format(dev), {f"turn-{n:04d}" for n in range(35)})
    finally:
        collector.close()
    assert dedupe(got) == [f"turn-{n:04d}" for n in range(35)]
    assert link.outbox.stats()["dropped"] == 0
    assert "transcript" not in got[0] and got[0]["ttfa_ms"] == 400.0  # text only with include_text
    assert not list((config.state_dir / "fleet" / "telemetry-spool").glob("*.json"))


def test_spool_survives_daemon_restart_and_text_follows_include_text(tmp_path, broker):
    dev = "attic"
    config = load_config(device_config(tmp_path, broker, dev, telemetry={"include_text": True}))
    watcher = Watcher(broker, [TOPIC.format(dev)], client_id="attic-collector", clean_start=False,
                      session_expiry=3600)
    broker.stop()

    async def first_run() -> None:  # broker down all along: everything goes to the spool
        link = make_link(config)
        link.start()
        for n in range(10):
            link.publish_trace(trace(dev, n))
        await link.stop()

    asyncio.run(first_run())
    assert len(Spool(config.state_dir / "fleet" / "telemetry-spool", 100)) == 10

    async def second_run() -> None:
        link = make_link(config)
        link.start()
        await until(lambda: link.connected, 30)
        assert await asyncio.to_thread(link.outbox.wait_delivered, 20)
        await link.stop()

    broker.start()
    asyncio.run(second_run())
    try:
        got = collect(watcher, TOPIC.format(dev), {f"turn-{n:04d}" for n in range(10)})
    finally:
        watcher.close()
    assert dedupe(got) == [f"turn-{n:04d}" for n in range(10)]
    assert got[0]["transcript"] == "what time is it" and got[0]["reply"] == "It is noon."


def test_full_spool_drops_oldest_and_counts_them(tmp_path):
    spool = Spool(tmp_path / "spool", max_items=10)
    spool.append_many([f"t{n}".encode() for n in range(25)])
    assert len(spool) == 10 and spool.dropped == 15
    reopened = Spool(tmp_path / "spool", max_items=10)  # the count and the items survive a restart
    assert reopened.dropped == 15
    items = [reopened.take() for _ in range(10)]
    assert [payload for _seq, payload in items] == [f"t{n}".encode() for n in range(15, 25)]
    for seq, _payload in items:
        reopened.done(seq)
    assert len(Spool(tmp_path / "spool", max_items=10)) == 0


def test_publish_trace_never_touches_the_disk_or_network_on_the_callers_thread(tmp_path, broker):
    """publish_trace only enqueues: it returns while the broker is down and the spool is slow."""
    config = load_config(device_config(tmp_path, broker, "cellar"))
    broker.stop()

    async def scenario() -> None:
        link = make_link(config)
        link.start()
        before = link.outbox.stats()["submitted"]
        for n in range(50):
            link.publish_trace(trace("cellar", n))
        assert link.outbox.stats()["submitted"] - before == 50
        await link.stop()
        assert len(link.outbox.spool) == 50

    asyncio.run(scenario())


def test_doctor_reports_spool_depth_and_drops(tmp_path):
    from edgeagent.config import build_config, resolve_runtime
    from edgeagent.doctor import check_fleet_spool

    config = resolve_runtime(build_config({"mqtt": {"enabled": True}, "telemetry": {"spool_max": 10},
                                           "paths": {"state_dir": str(tmp_path)}}))
    assert [c.detail for c in check_fleet_spool(config)] == ["0 traces waiting for the broker (max 10)"]
    Spool(tmp_path / "fleet" / "telemetry-spool", 10).append_many([b"{}"] * 12)
    (check,) = check_fleet_spool(config)
    assert check.level == "warn" and "10 traces waiting" in check.detail and "2 dropped" in check.detail
