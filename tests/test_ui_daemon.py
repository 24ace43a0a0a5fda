"""The kiosk's page on the whole daemon, in a real headless chromium: `edgeagent run` with real models
and a real mosquitto, its microphone a pipe this test talks into on cue.  The page must follow the
conversation (idle -> listening -> thinking -> speaking -> idle), show the final transcript and the
reply as it is spoken, cut the reply where a barge-in stopped the voice, mute through the fleet's own
path (the MQTT state says so) and open a turn with "tap to speak".  Screenshots go to out/test-ui/;
the event -> page delay is measured by the page itself and printed."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from benchmarks.stats import percentiles
from edgeagent.audio.wav import read_audio
from edgeagent.tts.chunker import speakable
from edgeagent.ui.kiosk import wait_for_page
from tests.conftest import REPO, free_port
from tests.fleet_support import Watcher, device_config
from tests.speech import espeak_wav, piper_wav
from tests.ui_support import chromium, screenshot, wait_for

pytest.importorskip("aiohttp")

FRAME = 320  # 20 ms at 16 kHz


class Mic:
    """The daemon's microphone: 20 ms frames of raw PCM written to its standard input in real time,
    silence unless it is given something to say."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.speech: collections.deque[np.ndarray] = collections.deque()
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def say(self, *parts: str | float) -> None:
        """Queue WAV files and pauses (seconds) to be spoken after what is queued."""
        audio = [read_audio(p) if isinstance(p, (str, os.PathLike)) else np.zeros(int(p * 16000), np.int16)
                 for p in parts]
        samples = np.concatenate(audio)
        samples = np.concatenate([samples, np.zeros(-len(samples) % FRAME, np.int16)])
        with self.lock:
            self.speech.extend(samples.reshape(-1, FRAME))

    def busy(self) -> bool:
        with self.lock:
            return bool(self.speech)

    def _run(self) -> None:
        silence = np.zeros(FRAME, np.int16)
        due = time.monotonic()
        while not self.stopped:
            with self.lock:
                frame = self.speech.popleft() if self.speech else silence
            try:
                self.pipe.write(frame.astype("<i2").tobytes())
                self.pipe.flush()
            except (BrokenPipeError, ValueError):
                return
            due += FRAME / 16000
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:  # the daemon was not reading (loading its models): no burst afterwards
                due = time.monotonic()

    def close(self) -> None:
        self.stopped = True
        self.thread.join(5)
        self.pipe.close()


RECORD_STATES = """
window.testStates = [document.body.dataset.state];
new MutationObserver(() => {
  const state = document.body.dataset.state;
  if (window.testStates[window.testStates.length - 1] !== state) window.testStates.push(state);
}).observe(document.body, {attributes: true, attributeFilter: ["data-state"]});
"""


def current_turn_text(driver, part: str) -> str:
    return driver.execute_script(f"return document.querySelector('.exchange:last-child .{part}')?.textContent || ''")


def answered_and_settled(driver) -> None:
    """The answer was spoken and the follow-up window after it closed unused: idle, ready for the next."""
    wait_for(driver, "window.testStates.slice(-4).join() === 'speaking,idle,listening,idle'", 120,
             what="the answer, then its follow-up window closing")


def capture(driver, state: str, name: str, timeout: float = 60) -> None:
    """A screenshot while the page shows ``state`` (it may have moved on already: then the history says)."""
    wait_for(driver, f"window.testStates.includes('{state}')", timeout, what=f"state {state}")
    if driver.execute_script("return document.body.dataset.state") == state:
        screenshot(driver, name)
    else:
        print(f"screenshot {name}: the page had already left '{state}'")


def test_the_page_follows_a_real_conversation_barge_in_mute_and_tap_to_speak(tmp_path, broker):
    started = time.monotonic()
    port = free_port()
    config = device_config(tmp_path, broker, "kiosk-1", ui={"enabled": True, "port": port},
                           llm={"max_tokens": 48}, agent={"follow_up_s": 2.0}, telemetry={"include_text": True})
    states = Watcher(broker, ["edgeagent/kiosk-1/state"])
    traces = Watcher(broker, ["edgeagent/kiosk-1/telemetry/turn"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
    log_path = tmp_path / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-m", "edgeagent", "--config", str(config), "run", "--input", "-",
                             "--output", str(tmp_path / "agent.wav")], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"))
    mic = Mic(proc.stdin)
    wake, question = piper_wav("Alexa."), piper_wav("What is the capital of France?")
    story, interruption = piper_wav("Tell me a long story about a dragon and a knight."), espeak_wav("What is two plus two?")
    try:
        with chromium(tmp_path / "profile") as driver:
            assert wait_for_page(f"http://127.0.0.1:{port}/", timeout_s=60), log_path.read_text()[-2000:]
            driver.get(f"http://127.0.0.1:{port}/")  # served before the models load
            wait_for(driver, "document.body.dataset.stream", 60, what="the page's event stream")
            driver.execute_script(RECORD_STATES)
            if driver.execute_script("return document.body.dataset.state") == "starting":
                screenshot(driver, "daemon-0-starting")
            wait_for(driver, "document.body.dataset.state === 'idle'", 180, what="the voice loop ready")
            ready = time.monotonic()
            screenshot(driver, "daemon-1-idle")

            # 1. wake word and a question: every state in turn, the final transcript, the reply as spoken
            mic.say(wake, 0.3, question)
            capture(driver, "listening", "daemon-2-listening")
            capture(driver, "thinking", "daemon-3-thinking")
            capture(driver, "speaking", "daemon-4-speaking")
            trace = traces.get_json("edgeagent/kiosk-1/telemetry/turn", timeout=120)
            assert trace["outcome"] == "answered", trace
            answered_and_settled(driver)
            seen = [s for s in driver.execute_script("return window.testStates") if s != "starting"]
            assert seen[:5] == ["idle", "listening", "thinking", "speaking", "idle"], seen
            user = current_turn_text(driver, "user")
            assert "capital" in user.lower() and "france" in user.lower(), user
            assert not driver.execute_script("return document.querySelector('.exchange:last-child .user')"
                                             ".classList.contains('partial')")
            assert current_turn_text(driver, "agent").split() == trace["heard_reply"].split(), trace

            # 2. a barge-in: the reply shown stops where the voice stopped, short of what was generated
            mic.say(wake, 0.3, story)
            wait_for(driver, "document.body.dataset.state === 'speaking' && (document.querySelector("
                             "'.exchange:last-child .agent')?.textContent || '').split(' ').length >= 4", 120,
                     what="the story being told")
            turn = driver.execute_script("return document.querySelector('.exchange:last-child').dataset.turn")
            mic.say(interruption)
            cut = f"document.querySelector('.exchange[data-turn=\"{turn}\"] .agent')"
            wait_for(driver, f"{cut}.classList.contains('cut')", 60, what="the reply marked as cut off")
            screenshot(driver, "daemon-5-barge-in")
            shown = driver.execute_script(f"return {cut}.textContent").split()
            barged = traces.get_json("edgeagent/kiosk-1/telemetry/turn", lambda t: t["outcome"] == "barged_in", 60)
            generated = speakable(barged["reply"]).split()
            assert 1 <= len(shown) < len(generated), (shown, barged)
            assert generated[:len(shown)] == shown, (shown, generated)
            answer = traces.get_json("edgeagent/kiosk-1/telemetry/turn", timeout=120)  # the question it barged in with
            assert answer["outcome"] == "answered" and "plus" in answer["transcript"].lower(), answer
            answered_and_settled(driver)
            assert "plus" in current_turn_text(driver, "user").lower()

            # 3. tap to speak opens a turn without the wake word (the fleet sees it too)
            wait_for(driver, "!document.getElementById('talk').disabled", 30)
            listened = len(driver.execute_script("return window.testStates"))
            driver.find_element("id", "talk").click()
            wait_for(driver, f"window.testStates.slice({listened}).includes('listening')", 30, what="tap to speak")
            screenshot(driver, "daemon-6-tap-to-speak")
            states.get_json("edgeagent/kiosk-1/state", lambda s: s.get("state") == "listening", 30)
            wait_for(driver, "document.body.dataset.state === 'idle'", 30)  # nobody spoke: the window closes

            # 4. mute on the page is the fleet's mute; an unmute from the fleet shows on the page
            driver.find_element("id", "mute").click()
            wait_for(driver, "document.getElementById('mute').getAttribute('aria-pressed') === 'true'", 30)
            states.get_json("edgeagent/kiosk-1/state", lambda s: s.get("mute") is True, 30)
            screenshot(driver, "daemon-7-muted")
            states.client.publish("edgeagent/kiosk-1/cmd/mute", json.dumps({"mute": False}), qos=1)
            wait_for(driver, "document.getElementById('mute').getAttribute('aria-pressed') === 'false'", 30)
            driver.find_element("id", "volume-down").click()
            states.get_json("edgeagent/kiosk-1/state", lambda s: abs(s.get("volume", 0) - 0.7) < 1e-6, 30)

            lags = driver.execute_script("return window.edgeagentLag")
        ended = time.monotonic()
    finally:
        mic.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        states.close()
        traces.close()
    report_latency(lags, ready - started, ended - started)


def report_latency(lags: list[dict], startup_s: float, total_s: float) -> None:
    dom = percentiles(entry["dom"] for entry in lags)
    frame = percentiles(entry["frame"] for entry in lags)
    assert dom is not None and frame is not None
    daemon = percentiles(entry["daemon"] for entry in lags)
    kinds = collections.Counter(entry["type"] for entry in lags)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    line = lambda name, p: f"  {name:<28} P50 {p['p50']:6.1f} ms  P90 {p['p90']:6.1f} ms  max {p['max']:6.1f} ms\n"  # noqa: E731
    print(f"\nevent -> page, {dom['n']} events ({dict(kinds)}), load average {load} on {os.cpu_count()} cores:\n"
          + line("event -> DOM updated", dom) + line("event -> frame drawn", frame)
          + line("  of which event -> feed", daemon)
          + "".join(line(f"  {kind} -> DOM", percentiles(e["dom"] for e in lags if e["type"] == kind))
                    for kind in sorted(kinds)) +
          f"browser test: {total_s:.1f} s in all, {startup_s:.1f} s of it the daemon loading its models")
