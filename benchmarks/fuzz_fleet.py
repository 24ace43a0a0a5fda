"""Fuzzing the fleet link: hypothesis-generated commands and desired-config documents, sent through
real mosquitto (the repo's config and ACL) to the stand-alone device process, one at a time.

Every message must get a well-formed answer (a command: a strict JSON object with ``ok``, on the
response topic if it was a valid one, else on ``{p}/cmd/<name>/result``; a desired document: a
config report) or be a counted rejection (a retained command: ignored, counted, cleared).  The
device must stay up, its memory flat, its log free of tracebacks.

``python -m benchmarks.fuzz_fleet`` (``make fuzz-fleet``): 10,000 payloads, figures printed.
tests/test_fleet_fuzz.py runs a small slice of the same thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.broker import OPERATOR, REPO, Broker, device_config, next_message
from edgeagent.config import Config
from edgeagent.fleet.topics import COMMANDS, Topics

DEVICE = "fuzzbox"
TOPICS = Topics("edgeagent", DEVICE)
P = TOPICS.prefix
RSS_EVERY = 1000
SAFE_COMMANDS = [c for c in COMMANDS if c != "restart"]  # a valid restart would restart the device, by design


# ---------------------------------------------------------------- what is sent

@dataclass(frozen=True)
class Message:
    kind: str  # "command" | "config"
    payload: bytes
    name: str = ""  # command name (a topic level)
    response_topic: str | None = None
    retain: bool = False


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
               | st.text(max_size=40))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                            max_size=4), max_leaves=12)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def _deep(n: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * n + closer * n


_raw = st.binary(max_size=300) | st.integers(1, 3000).map(_deep) | st.integers(1, 600).map(lambda n: _deep(n, b'{"a":', b"}"))
# what mosquitto takes in a topic or a response topic (it drops a client that sends control characters or
# non-characters there: such a message never reaches a device)
_topic_level = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="/+#"),
                       min_size=1, max_size=16)
_unit = st.one_of(st.floats(0.0, 1.0), st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.just(-0.0), st.text(max_size=5),
                  st.none(), st.booleans())
_args = st.one_of(
    st.fixed_dictionaries({"text": st.text(max_size=1200)}),
    st.fixed_dictionaries({"volume": _unit}),
    st.fixed_dictionaries({"mute": _json_values()}),
    st.fixed_dictionaries({}, optional={"id": st.text(max_size=80) | st.integers()}),
    st.dictionaries(st.text(max_size=10), _json_values(), max_size=4),
)
_response_topic = st.one_of(
    st.none(),
    st.builds(lambda tail: f"{P}/reply/{tail}", _topic_level),
    st.sampled_from([f"{P}/config/desired", f"{P}/cmd/restart", f"{P}/state", f"{P}/reply", f"{P}/replyx/1",
                     f"{P}/reply/#", f"{P}/reply/+", "edgeagent/other/reply/x", "homeassistant/device/x/config"]),
)
commands = st.builds(
    Message, kind=st.just("command"),
    payload=st.one_of(_args.map(_dumps), _json_values().map(_dumps), _raw, st.just(b"")),
    name=st.one_of(st.sampled_from(SAFE_COMMANDS), _topic_level.filter(lambda n: n != "restart")),
    response_topic=_response_topic, retain=st.sampled_from([False] * 19 + [True]))

_sections = [f.name for f in dataclasses.fields(Config)]
_keys = {f.name: [k.name for k in dataclasses.fields(f.default_factory())] for f in dataclasses.fields(Config)}  # type: ignore[misc]
_known_doc = st.sampled_from(_sections).flatmap(
    lambda section: st.dictionaries(st.sampled_from(_keys[section]), _json_values() | _unit, min_size=1, max_size=3)
    .map(lambda values: {section: values}))
configs = st.builds(
    Message, kind=st.just("config"),
    payload=st.one_of(_known_doc.map(_dumps), st.dictionaries(st.text(max_size=8), _json_values(), max_size=3).map(_dumps),
                      _json_values().map(_dumps), _raw, st.just(b"")),
    retain=st.booleans())
messages = st.one_of(commands, configs)


# ---------------------------------------------------------------- the device and the checks

@dataclass
class Figures:
    sent: int = 0
    outcomes: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    rss_start: int = 0
    rss_warm: int = 0
    rss_end: int = 0
    rss_every: list[int] = field(default_factory=list)  # after each RSS_EVERY payloads
    device: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class FuzzRun:
    """The device process and an operator client that sends one message and waits for its answer."""

    def __init__(self, workdir: Path, broker: Broker):
        self.broker, self.workdir = broker, workdir
        self.answers: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"operator:fuzz-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(*OPERATOR)
        self.client.on_message = lambda _c, _u, msg: self.answers.put(msg)
        subscribed: queue.Queue = queue.Queue()
        self.client.on_subscribe = lambda *_a: subscribed.put(True)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe([(f"{P}/reply/#", 1), (f"{P}/cmd/+/result", 1), (f"{P}/config/reported", 1),
                               (f"{P}/status", 1)])
        subscribed.get(timeout=10)
        config = device_config(workdir, broker, DEVICE)
        log = open(workdir / "device.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "edgeagent.fleet.device", "--config", str(config)],
                                     cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait(lambda m: m.topic == f"{P}/status" and m.payload == b"online", 30)
        self.wait(lambda m: m.topic == f"{P}/config/reported", 10)  # the report it publishes on connecting
        self.started = time.monotonic()
        self.figures = Figures(rss_start=self.rss())

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def wait(self, match, timeout: float = 10.0) -> mqtt.MQTTMessage | None:
        return next_message(self.answers, match, timeout)

    def send(self, m: Message) -> str:
        """Send one message, wait for its answer, check it; returns the outcome's name."""
        if not self.client.is_connected():  # the broker dropped us: nothing sent from now on would arrive
            raise RuntimeError(f"the broker disconnected the fuzzing client (see its log); last: {self.figures.problems[-1:]}")
        self.figures.sent += 1
        if m.kind == "config":
            self.client.publish(f"{P}/config/desired", m.payload, qos=1, retain=m.retain)
            msg = self.wait(lambda x: x.topic == f"{P}/config/reported")
            return self._outcome(m, msg, self._check_report)
        props = Properties(PacketTypes.PUBLISH)
        correlation = uuid.uuid4().bytes
        if m.response_topic is not None:
            props.ResponseTopic = m.response_topic
            props.CorrelationData = correlation
        self.client.publish(f"{P}/cmd/{m.name}", m.payload, qos=1, retain=m.retain, properties=props)
        if m.retain and not m.payload:
            return "ignored (empty retained command)"  # a deletion: nothing to answer, counted by the device
        # the answer: on the response topic (with our correlation data) if the device's rule accepts it, else
        # on {p}/cmd/<name>/result; whichever comes, it must be where that rule says
        msg = self.wait(lambda x: getattr(x.properties, "CorrelationData", None) == correlation
                        or (x.topic.startswith(f"{P}/cmd/") and x.topic.endswith("/result")))
        valid_reply = m.response_topic is not None and TOPICS.reply_problem(m.response_topic) is None
        if msg is not None and (msg.topic == m.response_topic) != valid_reply:
            self._problem(m, f"answered on {msg.topic!r}")
        outcome = self._outcome(m, msg, self._check_result)
        if m.retain:  # the device clears it; its empty retained echo reaches no one we listen to
            outcome = "retained command refused" if outcome == "reply: error" else outcome
        return outcome

    def _outcome(self, m: Message, msg: mqtt.MQTTMessage | None, check) -> str:
        if msg is None:
            self._problem(m, "no answer within 10 s")
            return "unanswered"
        try:
            body = json.loads(msg.payload, parse_constant=_refuse)
        except ValueError as exc:
            self._problem(m, f"answer is not strict JSON: {exc}")
            return "malformed answer"
        why = check(body)
        if why:
            self._problem(m, why)
            return "malformed answer"
        if m.kind == "config":
            return "report: rejected" if body["last_error"] else "report: applied"
        return "reply: ok" if body["ok"] else "reply: error"

    @staticmethod
    def _check_result(body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool) or not isinstance(body.get("command"), str):
            return f"not a command result: {str(body)[:200]}"
        if not body["ok"] and not isinstance(body.get("error"), str):
            return "an error result without an error"
        return None

    @staticmethod
    def _check_report(body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
            return f"not a config report: {str(body)[:200]}"
        error = body.get("last_error")
        if error is not None and not (isinstance(error, dict) and all(isinstance(error.get(k), str) for k in
                                                                      ("key", "reason", "message"))):
            return f"malformed last_error: {error}"
        return None

    def _problem(self, m: Message, why: str) -> None:
        self.figures.problems.append(f"{why}  <- {m.kind} {m.name!r} {m.payload[:80]!r} rt={m.response_topic!r} "
                                     f"retain={m.retain}")

    def finish(self) -> Figures:
        f = self.figures
        f.rss_end = self.rss()
        f.seconds = time.monotonic() - self.started
        self.client.publish(f"{P}/config/desired", b"", qos=1, retain=True)  # leave no retained document behind
        self.wait(lambda x: x.topic == f"{P}/config/reported")
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = f"{P}/reply/final", b"final"
        self.client.publish(f"{P}/cmd/stats", b"{}", qos=1, properties=props)
        stats = self.wait(lambda x: x.topic == f"{P}/reply/final")
        f.device = json.loads(stats.payload)["link"] if stats else {}
        return f

    def close(self) -> str:
        alive = self.proc.poll() is None
        self.proc.terminate()
        self.proc.wait(10)
        self.client.disconnect()
        self.client.loop_stop()
        log = (self.workdir / "device.log").read_text(errors="replace")
        return ("" if alive else "THE DEVICE DIED\n") + log


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def fuzz(run: FuzzRun, examples: int, seed: int | None = None, warm_up: int = 200) -> Figures:
    """Send ``examples`` hypothesis-generated messages through ``run``; RSS sampled after ``warm_up``."""
    outcomes = run.figures.outcomes

    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=seed is not None)
    @given(m=messages)
    def one(m: Message) -> None:
        outcomes[run.send(m)] += 1
        if run.figures.sent == warm_up:
            run.figures.rss_warm = run.rss()
        if run.figures.sent % RSS_EVERY == 0:
            run.figures.rss_every.append(run.rss())

    one()
    if not run.figures.rss_warm:
        run.figures.rss_warm = run.figures.rss_start
    return run.finish()


def report(f: Figures) -> str:
    mib = lambda b: b / 2**20  # noqa: E731
    lines = [f"payloads sent: {f.sent} in {f.seconds:.0f} s ({f.sent / max(f.seconds, 1e-9):.0f}/s)"]
    lines += [f"  {name}: {count}" for name, count in sorted(f.outcomes.items())]
    d = f.device
    lines.append(f"device link counters: messages {d.get('messages')}, rejected {d.get('rejected')}, "
                 f"ignored {d.get('ignored')}, connects {d.get('connects')}, connected {d.get('connected')}, "
                 f"uptime {d.get('uptime_s')} s")
    lines.append(f"device RSS: start {mib(f.rss_start):.1f} MiB, after warm-up {mib(f.rss_warm):.1f} MiB, "
                 f"end {mib(f.rss_end):.1f} MiB (growth after warm-up {mib(f.rss_end - f.rss_warm):+.2f} MiB)")
    if f.rss_every:
        lines.append(f"device RSS every {RSS_EVERY} payloads (MiB): " + " ".join(f"{mib(r):.1f}" for r in f.rss_every))
    lines.append(f"problems: {len(f.problems)}")
    lines += [f"  {p}" for p in f.problems[:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, help="derandomize (the same payloads every run)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker")
        broker.start()
        run = FuzzRun(Path(tmp), broker)
        try:
            figures = fuzz(run, args.examples, args.seed)
        finally:
            log = run.close()
            broker.stop()
    print(report(figures))
    tracebacks = log.count("Traceback")
    print(f"device log: {len(log.splitlines())} lines, {tracebacks} tracebacks"
          + (", DIED" if log.startswith("THE DEVICE DIED") else ""))
    return 1 if figures.problems or tracebacks or log.startswith("THE DEVICE DIED") else 0


if __name__ == "__main__":
    raise SystemExit(main())
