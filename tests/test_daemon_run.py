"""`edgeagent run` as a process: real models, real mosquitto, a real sd_notify socket, SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys

from edgeagent.audio.wav import read_audio
from tests.conftest import REPO
from tests.fleet_support import Watcher, device_config
from tests.speech import concat_wav, piper_wav, voiced_seconds


def test_daemon_on_wav_with_fleet_notify_and_sigterm(tmp_path, broker):
    user = concat_wav(tmp_path / "user.wav", [0.5, piper_wav("Alexa."), 0.3,
                                              piper_wav("What is the capital of France?"), 30.0])
    config = device_config(tmp_path, broker, "speaker-1", llm={"max_tokens": 16}, agent={"follow_up_s": 1.0})
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(120)
    watcher = Watcher(broker, ["edgeagent/speaker-1/#"])
    states = Watcher(broker, ["edgeagent/speaker-1/state"])  # in publish order, apart from the telemetry
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
    env["NOTIFY_SOCKET"] = str(notify_path)
    out = tmp_path / "agent.wav"
    proc = subprocess.Popen([sys.executable, "-m", "edgeagent", "--config", str(config), "run",
                             "--input", str(user), "--output", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "daemon.log", "wb"))
    try:
        messages = []
        while "READY=1" not in "".join(messages):
            messages.append(notify.recv(4096).decode())
        assert watcher.get(lambda m: m.topic == "edgeagent/speaker-1/status" and m.payload == b"online", 30)
        trace = watcher.get_json("edgeagent/speaker-1/telemetry/turn", timeout=60)
        assert trace["outcome"] == "answered" and trace["wake_word"] == "alexa"
        assert trace["device_id"] == "speaker-1" and trace["ttfa_ms"] > 0
        assert "transcript" not in trace and "reply" not in trace  # telemetry.include_text is off
        # the answer, then the 1 s follow-up window nobody speaks in, then idle
        for state in ("speaking", "listening", "idle"):
            states.get_json("edgeagent/speaker-1/state", lambda s: s.get("state") == state, timeout=30)
        # finding 13: a lone surrogate was accepted ({"ok": true, "speaking": true}) and failed unseen later
        watcher.client.publish("edgeagent/speaker-1/cmd/say", b'{"text": "lone \\ud800 surrogate"}', qos=1)
        refused = watcher.get_json("edgeagent/speaker-1/cmd/say/result", timeout=20)
        assert refused["ok"] is False and "surrogate" in refused["error"], refused
        watcher.client.publish("edgeagent/speaker-1/cmd/say", json.dumps({"text": "Hello from the fleet."}), qos=1)
        result = watcher.get_json("edgeagent/speaker-1/cmd/say/result", timeout=20)
        assert result["ok"] is True, result
        states.get_json("edgeagent/speaker-1/state", lambda s: s.get("state") == "speaking", timeout=20)
        states.get_json("edgeagent/speaker-1/state", lambda s: s.get("state") == "idle", timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        while "STOPPING=1" not in messages[-1]:
            messages.append(notify.recv(4096).decode())
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()
        states.close()
        notify.close()
    assert any(m.startswith("STATUS=") for m in messages)
    log = (tmp_path / "daemon.log").read_text(errors="replace")
    assert "UnicodeEncodeError" not in log and "never retrieved" not in log, log[-3000:]
    # the answer and, after the follow-up window's silence, the announcement were both played
    agent = read_audio(out)
    answer_end = _last_voice_before_gap(agent, gap_s=0.9)
    assert voiced_seconds(agent[:int(answer_end * 16000)]) > 1.0, log[-2000:]
    assert voiced_seconds(agent, answer_end + 0.9) > 0.5, log[-2000:]
    lines = (tmp_path / "state-speaker-1" / "turns.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["turn_id"] == trace["turn_id"]  # the local telemetry file, flushed


def _last_voice_before_gap(audio, gap_s):
    """End (seconds) of the first voiced stretch that is followed by at least ``gap_s`` of silence."""
    voiced = [voiced_seconds(audio[i:i + 320]) > 0 for i in range(0, len(audio) - 320, 320)]
    seen, quiet = None, 0
    for index, loud in enumerate(voiced):
        if loud:
            seen, quiet = index, 0
        elif seen is not None:
            quiet += 1
            if quiet * 0.02 >= gap_s:
                return (seen + 1) * 0.02
    raise AssertionError("no silence after the first reply")


def test_a_remote_config_the_daemon_cannot_start_with_is_rolled_back(tmp_path, broker):
    """A remote config that crashes the daemon at start (a wake word that does not exist: a name, so
    the fleet may set it) kept it off its broker for good under systemd's Restart=.  Now, after three
    starts that never reach the broker, it starts with the last config that did, and reports why."""
    from tests.test_fleet_device import request
    from tests.test_fleet_remote_config import desire

    config = device_config(tmp_path, broker, "speaker-2")
    user = concat_wav(tmp_path / "user.wav", [90.0])  # nobody speaks: the daemon just runs
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
    log = open(tmp_path / "daemon.log", "ab")

    def start() -> subprocess.Popen:  # what systemd's Restart=on-failure does
        return subprocess.Popen([sys.executable, "-m", "edgeagent", "--config", str(config), "run", "--input", str(user),
                                 "--output", os.devnull], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)

    watcher = Watcher(broker, ["edgeagent/speaker-2/#"])
    proc = start()
    try:
        watcher.get(lambda m: m.topic == "edgeagent/speaker-2/status" and m.payload == b"online", 120)
        report = desire(watcher, "speaker-2", {"wake": {"models": ["no_such_word"]}})
        assert report["last_error"] is None and report["restart_required"] == ["wake.models"], report
        assert request(watcher, "speaker-2", "restart", "{}")["restarting"] is True
        for _crash in range(3):  # the restarted process, then two more starts: none reaches the broker
            assert proc.wait(120) != 0
            proc = start()
        back = watcher.get_json("edgeagent/speaker-2/config/reported", lambda r: r["rollback"] is not None, 120)
        assert back["config"]["wake"]["models"] == ["alexa"] and back["rollback"]["keys"] == ["wake.models"]
        assert "3 starts" in back["rollback"]["reason"]
        refused = watcher.get_json("edgeagent/speaker-2/config/reported", lambda r: r["last_error"] is not None, 30)
        assert "rolled back" in refused["last_error"]["reason"]
        assert request(watcher, "speaker-2", "ping", "{}")["pong"] is True
    finally:
        proc.kill()
        proc.wait()
        watcher.close()
        log.close()
    assert "no_such_word" in (tmp_path / "daemon.log").read_text(errors="replace")  # it did crash on it
