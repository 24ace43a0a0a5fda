"""Prometheus metrics of the collector: what Grafana and the alert rules in deploy/prometheus read.

Turn metrics count each stored turn once (only turns new to the database, after their commit), so
several collectors sharing the subscription can be summed without double counting.  Device
status comes from the retained ``{p}/status`` topics, which every collector sees in full.
Units follow Prometheus convention (seconds); traces carry milliseconds.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server

from edgeagent.fleetserver.traces import OUTCOMES, TurnRow

# histogram name (without edgeagent_turn_ / _seconds) -> trace field
STAGE_METRICS = {
    "ttfa": "ttfa_ms",
    "stt": "end_of_speech_to_final_ms",
    "llm_ttft": "llm_ttft_ms",
    "tts_first_chunk": "tts_first_chunk_ms",
    "barge_in_stop": "barge_in_stop_ms",
}
# a handful of buckets: per device x 5 stages, the series count is what scales with the fleet
STAGE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0)


ALL_DEVICES = "(all)"


class Metrics:
    """One registry per collector; ``serve`` exposes it over HTTP for Prometheus to scrape.

    Per-device histograms cost ~55 series a device (2,000 devices: ~110,000 series, an 8 MB scrape);
    ``device_histograms=False`` labels every observation ``device="(all)"`` instead: the fleet-wide
    panels and alerts still work, the per-device latency panel shows one line."""

    def __init__(self, device_histograms: bool = True) -> None:
        self._by_device = device_histograms
        disable_created_metrics()  # *_created series: twice the series count, and no panel reads them
        self.registry = r = CollectorRegistry()
        self.turns = Counter("edgeagent_turns", "Turns stored, by device and outcome", ["device", "outcome"], registry=r)
        self.stages = {name: Histogram(f"edgeagent_turn_{name}_seconds", f"Turn stage {field} (seconds)", ["device"],
                                       buckets=STAGE_BUCKETS, registry=r)
                       for name, field in STAGE_METRICS.items()}
        self.device_online = Gauge("edgeagent_device_online", "1 while the device's status is online, else 0",
                                   ["device"], registry=r)
        self.devices_online = Gauge("edgeagent_devices_online", "Devices whose status is online", registry=r)
        self.devices_known = Gauge("edgeagent_devices_known", "Devices that ever reported a status", registry=r)
        self.messages = Counter("edgeagent_collector_messages", "Messages committed, by kind (turn, status, reject)",
                                ["kind"], registry=r)
        self.duplicates = Counter("edgeagent_collector_duplicate_turns",
                                  "Turns received again (QoS 1 redelivery) and not stored twice", registry=r)
        self.db_errors = Counter("edgeagent_collector_db_errors", "Failed database writes (retried)", registry=r)
        self.commit_seconds = Histogram("edgeagent_collector_commit_seconds", "Time to write and commit a batch",
                                        registry=r)
        self.store_delay = Histogram("edgeagent_collector_store_delay_seconds",
                                     "From a message's arrival at the collector to its commit", registry=r)
        self.pending = Gauge("edgeagent_collector_pending", "Messages received, not yet committed", registry=r)
        self._lock = threading.Lock()
        self._status: dict[str, bool] = {}
        self._by_device_children: dict[str, tuple[dict[str, Any], list[tuple[str, Any]]]] = {}
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics; the port (0 picks a free one)."""
        self._server, _thread = start_http_server(port, host, registry=self.registry)
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def stored(self, turns: Iterable[TurnRow]) -> None:
        for turn in turns:
            outcomes, stages = self._children(turn.device_id)
            outcomes[turn.outcome].inc()
            for field, histogram in stages:
                value = turn.get(field)
                if value is not None:
                    histogram.observe(value / 1000.0)

    def status(self, device: str, status: str) -> None:
        online = status == "online"
        with self._lock:
            self._status[device] = online
            self.devices_online.set(sum(self._status.values()))
            self.devices_known.set(len(self._status))
        self.device_online.labels(device).set(1 if online else 0)

    def _children(self, device: str) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
        """A device's counter per outcome and (field, histogram) per stage, looked up once: every
        outcome's series exists from its first turn (rate() needs a zero to start from)."""
        children = self._by_device_children.get(device)
        if children is None:
            hist_label = device if self._by_device else ALL_DEVICES
            children = self._by_device_children[device] = (
                {outcome: self.turns.labels(device, outcome) for outcome in OUTCOMES},
                [(field, self.stages[name].labels(hist_label)) for name, field in STAGE_METRICS.items()])
        return children
