"""Reconnect back-off with jitter: the delay schedule, and a fleet of real device links coming back
after a real broker restart spread over seconds, not in the same instant."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from edgeagent.config import load_config
from edgeagent.fleet.backoff import JitteredBackoff
from edgeagent.fleet.device import StandaloneDevice
from edgeagent.fleet.link import FleetLink
from tests.fleet_support import device_config


def test_delays_are_random_within_a_doubling_window_and_reset_on_connect():
    backoff = JitteredBackoff(min_s=1.0, max_s=60.0, spread=4.0, rng=random.Random(3))
    windows = [4, 8, 16, 32, 60, 60, 60]
    for ceiling in windows:
        assert 1.0 <= backoff.next_delay() <= ceiling
    backoff.reset()
    firsts = []
    for _ in range(2000):
        firsts.append(backoff.next_delay())
        backoff.reset()
    assert min(firsts) >= 1.0 and max(firsts) <= 4.0
    assert statistics.pstdev(firsts) > 0.7  # uniform over 3 s: ~0.87; paho's own back-off: 0
    late = [JitteredBackoff(rng=random.Random(n), failures=20).next_delay() for n in range(500)]
    assert max(late) <= 60.0 and statistics.median(late) > 20


def test_links_reconnect_spread_out_after_a_broker_restart(tmp_path, broker):
    configs = [load_config(device_config(tmp_path, broker, f"spk{n}")) for n in range(12)]

    async def scenario() -> list[float]:
        links = [FleetLink(c, StandaloneDevice(c)) for c in configs]
        for link in links:
            link.start()
        try:
            deadline = time.monotonic() + 20
            while not all(link.connected for link in links) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert all(link.connected for link in links)
            await asyncio.to_thread(broker.stop)
            await asyncio.to_thread(broker.start)
            down_at = time.monotonic()
            back: dict[int, float] = {}
            while len(back) < len(links) and time.monotonic() < down_at + 20:
                for n, link in enumerate(links):
                    if n not in back and link.counters["connects"] == 2:
                        back[n] = time.monotonic() - down_at
                await asyncio.sleep(0.02)
            return sorted(back.values())
        finally:
            for link in links:
                await link.stop(timeout=2)

    times = asyncio.run(scenario())
    assert len(times) == 12, f"only {len(times)} of 12 links came back: {times}"
    # each waited its own random 1-4 s; paho's fixed back-off would bring all 12 back together
    assert times[-1] - times[0] > 1.0, times
    assert times[-1] < 8.0, times
