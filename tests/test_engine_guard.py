"""A native engine that crashes: the daemon falls back instead of crash-looping, and doctor says so.

The crash is a real SIGSEGV of the real process, raised inside the engine's load by the
``EDGEAGENT_FAULT_INJECT`` test hook (a packaged engine that segfaults on demand does not exist).
"""

import json
import os
import signal
import socket
import subprocess
import sys

from edgeagent.audio.wav import read_audio
from edgeagent.runtime.engine_guard import CRASH_LIMIT, FAULT_INJECT_ENV
from tests.conftest import REPO
from tests.fleet_support import Watcher, device_config
from tests.speech import concat_wav, piper_wav, voiced_seconds


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
    env.update(extra)
    return env


def _edgeagent(config, *args, env, timeout=300, **kwargs):
    return subprocess.run([sys.executable, "-m", "edgeagent", "--config", str(config), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def test_a_tts_engine_that_keeps_crashing_at_start_is_replaced_by_its_fallback(tmp_path, broker):
    user = concat_wav(tmp_path / "user.wav", [0.5, piper_wav("Alexa."), 0.3,
                                              piper_wav("What is the capital of France?"), 4.0])
    config = device_config(tmp_path, broker, "crashy", llm={"max_tokens": 12}, agent={"follow_up_s": 0.0})
    out = tmp_path / "agent.wav"
    env = _env(**{FAULT_INJECT_ENV: "tts:hibari"})
    run = ("run", "--input", str(user), "--output", str(out))
    for attempt in range(CRASH_LIMIT):
        died = _edgeagent(config, *run, env=env)
        assert died.returncode == -signal.SIGSEGV, f"start {attempt + 1}: {died.returncode}\n{died.stderr[-2000:]}"

    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.5)
    states = Watcher(broker, ["edgeagent/crashy/state"])
    proc = subprocess.Popen([sys.executable, "-m", "edgeagent", "--config", str(config), *run], cwd=REPO,
                            env=dict(env, NOTIFY_SOCKET=str(notify_path)), stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "daemon.log", "wb"))
    messages = []
    try:
        while True:  # read as it sends: a full notify socket would block the daemon
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                if proc.poll() is not None:
                    break
        assert proc.wait(300) == 0, (tmp_path / "daemon.log").read_text()[-3000:]
        state = states.get_json("edgeagent/crashy/state", lambda s: s.get("degraded"), timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
        states.close()
    ready = next(m for m in messages if "READY=1" in m)
    assert "degraded: tts: hibari crashed the daemon 3 times while starting; using espeak" in ready
    loading = [m for m in messages if m.startswith("EXTEND_TIMEOUT_USEC=")]  # each engine extends the start timeout
    assert any("STATUS=loading tts (espeak)" in m for m in loading)
    assert not any("loading tts (hibari)" in m for m in loading)  # the crashing engine was not tried again
    assert "espeak" in state["degraded"]["tts"]
    assert voiced_seconds(read_audio(out)) > 0.5  # espeak answered the question

    doctor = json.loads(_edgeagent(config, "doctor", "--json", env=_env()).stdout)
    start = next(c for c in doctor if c["area"] == "engine" and c["item"] == "tts start")
    assert start["level"] == "warn" and "runs espeak instead" in start["detail"]
    retried = _edgeagent(config, "doctor", "--retry-engines", "--json", env=_env())
    assert "tts:hibari" in retried.stdout


def test_doctor_runs_each_engine_in_a_child_and_reports_a_crash_as_a_failure(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path}/state"\n')
    result = _edgeagent(config, "doctor", "--json", env=_env(**{FAULT_INJECT_ENV: "stt:whisper"}))
    engines = {c["item"]: c for c in json.loads(result.stdout) if c["area"] == "engine"}
    assert engines["stt"]["level"] == "fail"
    assert "crashed (SIGSEGV)" in engines["stt"]["detail"] and "stt.engine = pocketsphinx" in engines["stt"]["detail"]
    for family in ("wake", "vad", "tts", "aec", "llm"):
        assert engines[family]["level"] == "ok", engines[family]


def _notifications(tmp_path, monkeypatch) -> socket.socket:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    return sock


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


def test_a_load_that_uses_cpu_keeps_extending_the_start_timeout_and_an_idle_one_does_not(tmp_path, monkeypatch):
    import time

    from edgeagent.runtime.engine_guard import extending_start_timeout

    sock = _notifications(tmp_path, monkeypatch)
    with extending_start_timeout("tts (piper)", step_timeout_s=60, check_s=0.3):
        end = time.monotonic() + 1.6
        while time.monotonic() < end:  # a slow model load: busy the whole time
            sum(range(10_000))
    busy = _drain(sock)
    assert busy[0] == "EXTEND_TIMEOUT_USEC=60000000\nSTATUS=loading tts (piper)"
    renewed = [m for m in busy[1:] if m.startswith("EXTEND_TIMEOUT_USEC=60000000\nSTATUS=loading tts (piper): ")]
    assert len(renewed) >= 3, busy  # renewed every check while it made progress

    with extending_start_timeout("stt (whisper)", step_timeout_s=60, check_s=0.3):
        time.sleep(1.6)  # blocked, no CPU: a hang is not renewed, systemd's timeout runs out
    assert _drain(sock) == ["EXTEND_TIMEOUT_USEC=60000000\nSTATUS=loading stt (whisper)"]

    with extending_start_timeout("llm (local)", step_timeout_s=60, check_s=0.3, max_s=0.5):
        end = time.monotonic() + 1.6
        while time.monotonic() < end:  # busy, but past the longest any load may take: an endless loop
            sum(range(10_000))
    assert len(_drain(sock)) <= 2
    sock.close()
