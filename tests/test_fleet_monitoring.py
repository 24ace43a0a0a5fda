"""deploy/prometheus and deploy/grafana against the real tools: promtool checks and unit-tests the
alert rules, and a real Prometheus scrapes a real collector so that every query of the Grafana
dashboard and every metric of the alert rules is shown to return numbers."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.collector_support import make_trace, publish_all, scrape, trace_message, wait_for
from benchmarks.broker import REPO, free_port
from tests.fleet_support import Watcher
from tests.test_fleet_collector import in_process_collector

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "edgeagent-fleet.json"
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(not PROMTOOL or not shutil.which("prometheus"),
                                      reason="Debian package 'prometheus' not installed (make install adds it)")


@needs_prometheus
def test_alert_rules_and_config_check_and_their_unit_tests_pass():
    for args in (["check", "rules", "edgeagent-alerts.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "edgeagent-alerts.test.yml"]):
        result = subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, Grafana's variables filled in as Grafana would."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    assert any(v["name"] == "device" for v in dashboard["templating"]["list"])
    out = []
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "20s").replace('"$device"', '".*"')
            assert "$" not in expr, expr
            out.append((panel["title"], expr))
    return out


class Prometheus:
    def __init__(self, tmp_path, target_port: int):
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: edgeagent-collector
    static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
""")
        self.log = open(tmp_path / "prometheus.log", "wb")
        self.proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def ready(self) -> bool:
        try:
            return bool(self.query('up{job="edgeagent-collector"} == 1'))
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def _turns(batch: int) -> list[tuple[str, bytes]]:
    out = []
    for n in range(batch * 10, batch * 10 + 10):
        outcome = ("answered", "barged_in", "error", "no_speech")[n % 4]
        out.append(trace_message(make_trace(f"dev{n % 2}", n, outcome=outcome, barge_in=outcome == "barged_in",
                                            barge_in_stop_ms=15.0 if outcome == "barged_in" else None)))
    return out


@needs_prometheus
def test_prometheus_scraping_the_collector_answers_every_dashboard_query(broker, tmp_path):
    collector = in_process_collector(broker, f"sqlite:///{tmp_path}/fleet.db")
    metrics_port = collector.metrics.serve(0)
    publisher = Watcher(broker, [])
    prometheus = Prometheus(tmp_path, metrics_port)
    try:
        publish_all(publisher.client, _turns(0) + [("edgeagent/dev0/status", b"online"),
                                                   ("edgeagent/dev1/status", b"offline")])
        wait_for(lambda: collector.counters["stored"] == 10, 10, "10 stored turns")
        wait_for(prometheus.ready, 60, "Prometheus to scrape the collector", interval=0.5)
        time.sleep(2)
        publish_all(publisher.client, _turns(1))  # so every rate() over the window is above zero
        wait_for(lambda: prometheus.query("sum(edgeagent_turns_total) == 20"), 20, "Prometheus to see 20 turns",
                 interval=0.5)

        served = {line.split("{")[0].split(" ")[0] for line in scrape(metrics_port).splitlines()
                  if line and not line.startswith("#")}
        rules = (PROMETHEUS / "edgeagent-alerts.yml").read_text()
        queries = dashboard_queries()
        for source, text in [("alert rules", rules)] + queries:
            for name in re.findall(r"\bedgeagent_[a-z_]+", text):
                assert name in served, f"{source}: {name} is not served by the collector"
        for title, expr in queries:
            result = prometheus.query(expr)
            assert result, f"{title}: no data for {expr}"
            values = [float(r["value"][1]) for r in result]
            assert all(math.isfinite(v) for v in values), f"{title}: {expr} -> {values}"
        assert prometheus.query("max(edgeagent_devices_online)")[0]["value"][1] == "1"
        offline = prometheus.query("max by (device) (edgeagent_device_online) == 0")
        assert [r["metric"]["device"] for r in offline] == ["dev1"]
    finally:
        prometheus.stop()
        publisher.close()
        collector.stop()
        collector.metrics.close()
