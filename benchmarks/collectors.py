"""The fleet server's harness, shared by the tests and ``bench_fleet_scale``: collector processes
(``edgeagent fleet collect``) against the repo's mosquitto setup, traces, Prometheus scrapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from benchmarks.broker import REPO, Broker, free_port

COLLECTOR = ("collector", "collector-secret")  # deploy/mosquitto's read-only collector login


def make_trace(device: str, n: int, **fields: Any) -> dict[str, Any]:
    """A plausible trace (DESIGN.md schema); ``fields`` override."""
    trace = {"turn_id": f"{device}-{n}", "device_id": device, "started_at": "2026-12-01T10:00:00.000Z",
             "wake_word": "okay_nabu", "wake_score": 0.93, "speech_ms": 1800.0, "end_of_speech_to_final_ms": 400.0 + n,
             "llm_backend": "local", "llm_ttft_ms": 200.0 + n % 50, "llm_tokens": 31, "tts_first_chunk_ms": 150.0,
             "ttfa_ms": 900.0 + n, "speak_ms": 3100.0, "barge_in": False, "barge_in_stop_ms": None,
             "outcome": "answered", "error": None}
    trace.update(fields)
    return trace


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until ``check()`` is truthy (returned); AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus text output (None if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def add_login(broker: Broker, user: str, password: str) -> None:
    """Add an MQTT user to the running broker and wait until it reloaded its password file."""
    import paho.mqtt.client as mqtt

    broker.add_user(user, password)

    def can_log_in() -> bool:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set(user, password)
        try:
            client.connect("127.0.0.1", broker.port)
            for _ in range(30):  # CONNACK within 3 s
                if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS or client.is_connected():
                    break
            return client.is_connected()
        except OSError:
            return False
        finally:
            client.disconnect()

    wait_for(can_log_in, 10, f"the broker to accept {user}", interval=0.2)


class CollectorProcess:
    """``edgeagent fleet collect`` as a child process logging to a file, with its metrics port."""

    def __init__(self, broker: Broker, db_url: str, workdir: Path, client_id: str, *extra: str):
        self.metrics_port = free_port()
        password = workdir / "collector.password"
        if not password.exists():
            password.write_text(COLLECTOR[1])
            add_login(broker, *COLLECTOR)
        self.log_path = workdir / f"collector-{client_id}.log"
        self.cmd = [sys.executable, "-m", "edgeagent", "fleet", "--host", "127.0.0.1", "--port", str(broker.port),
                    "--username", COLLECTOR[0], "--password-file", str(password), "collect", "--db", db_url,
                    "--client-id", client_id, "--metrics-port", str(self.metrics_port), *extra]
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "CollectorProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: "connected to" in self.log() or self.proc.poll() is not None, 30, "the collector to connect")
            assert self.proc.poll() is None, self.log()
        return self

    def metrics(self) -> str:
        return scrape(self.metrics_port)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def publish_all(client: Any, messages: list[tuple[str, bytes]], timeout: float = 30) -> None:
    """Publish QoS 1 and wait until the broker acknowledged every one."""
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "the broker did not acknowledge a publish"


def trace_message(trace: dict[str, Any]) -> tuple[str, bytes]:
    return f"edgeagent/{trace['device_id']}/telemetry/turn", json.dumps(trace).encode()
