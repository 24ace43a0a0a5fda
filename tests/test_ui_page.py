"""The kiosk's page on its real server and a real headless chromium, fed typed events directly (no
models): what it draws for each, the microphone message, timers, reduced motion, a reconnect that
resumes, and who may use the controls and see transcripts (tests/test_ui_daemon.py runs it on the
whole daemon)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
import time

import pytest

from edgeagent.config import load_config
from edgeagent.events import (AgentState, MicrophoneStatus, ReplyDone, RunningTimer, Spoken, StateChanged,
                              TimersChanged, TranscriptFinal, TranscriptPartial)
from edgeagent.runtime.remote import VoiceRemote
from edgeagent.ui.feed import Feed
from tests.conftest import free_port
from tests.ui_support import chromium, screenshot, wait_for

pytest.importorskip("aiohttp")

from edgeagent.ui.server import UiServer  # noqa: E402


class PageServer:
    """The real UiServer and Feed, with a real VoiceRemote (no voice loop behind it), on a loop thread."""

    def __init__(self, token: str = "", include_text: bool = False):
        self.config = load_config(None, env={})
        self.config.ui.port = free_port()
        self.config.ui.token = token
        self.config.telemetry.include_text = include_text
        self.remote = VoiceRemote(self.config)
        self.feed = Feed()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = UiServer(self.config.ui, self.feed, self.remote,
                               include_text=lambda: self.remote.device_state.config.telemetry.include_text,
                               hello=lambda: {"device_name": "test", "wake_words": ["Okay Nabu"]})
        self.run(self.server.start())
        self.remote.device_state.observers.append(self.feed.publish_device)
        self.url = self.server.url

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def on_loop(self, fn, *args):
        async def call():
            return fn(*args)
        return self.run(call())

    def publish(self, event, turn: str = "") -> None:
        self.on_loop(self.feed.publish, event, turn)

    def close(self) -> None:
        self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def page_server():
    server = PageServer()
    yield server
    server.close()


def now() -> float:
    return time.monotonic()


def state(old: str, new: str) -> StateChanged:
    return StateChanged(t=now(), old=AgentState(old), new=AgentState(new), reason="test")


def test_page_draws_events_timers_the_missing_microphone_and_resumes_after_a_reconnect(page_server, tmp_path):
    server = page_server
    with chromium(tmp_path / "profile") as driver:
        driver.get(server.url)
        wait_for(driver, "document.body.dataset.state === 'starting'", what="the page before the voice loop")
        server.publish(MicrophoneStatus(t=now(), ok=False, detail="audio device lost: no input device"))
        wait_for(driver, "!document.getElementById('mic-missing').hidden", what="the microphone message")
        assert "cannot hear you" in driver.find_element("id", "mic-missing").text
        screenshot(driver, "page-mic-missing")
        server.publish(MicrophoneStatus(t=now(), ok=True, detail="audio ok"))
        server.on_loop(server.feed.publish_device, {"state": "idle", "voice_loop": True, "mute": False, "volume": 0.8})
        wait_for(driver, "document.getElementById('mic-missing').hidden && document.body.dataset.state === 'idle'")
        assert "Okay Nabu" in driver.find_element("id", "state-hint").text

        server.publish(state("idle", "listening"), "t1")
        orb_motion = "getComputedStyle(document.getElementById('orb'), '::after').animationName"
        assert wait_for(driver, orb_motion) == "ripple"
        server.publish(TranscriptPartial(t=now(), text="what time"), "t1")
        wait_for(driver, "document.querySelector('.exchange .user.partial')?.textContent === 'what time'")
        server.publish(TranscriptFinal(t=now(), text="What time is it?"), "t1")
        server.publish(state("listening", "thinking"), "t1")
        server.publish(state("thinking", "speaking"), "t1")
        server.publish(Spoken(t=now(), text="It is", played_ms=300), "t1")
        server.publish(Spoken(t=now(), text="It is ten o'clock.", played_ms=900), "t1")
        server.publish(ReplyDone(t=now(), text="It is ten o'clock.", tokens=6), "t1")
        server.publish(TimersChanged(t=now(), timers=(RunningTimer("a", "pasta timer", time.time() + 95),)))
        wait_for(driver, "document.querySelector('.exchange .agent')?.textContent === \"It is ten o'clock.\"")
        assert driver.find_element("css selector", ".exchange .user").text == "What time is it?"
        wait_for(driver, "!document.getElementById('timers').hidden", what="the timers panel")
        timer = driver.find_element("id", "timer-list").text
        assert "pasta timer" in timer and re.search(r"^1:3[3-6]$", timer, re.M), timer
        screenshot(driver, "page-speaking-with-timer")

        # prefers-reduced-motion: the cue stops moving, the state still shows
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]})
        server.publish(state("speaking", "listening"), "t1")
        wait_for(driver, "document.body.dataset.state === 'listening'")
        assert driver.execute_script(f"return {orb_motion}") == "none"
        assert driver.find_element("id", "state-label").text == "Listening…"
        server.publish(state("listening", "speaking"), "t1")

        # the stream breaks; what happens meanwhile arrives once it is back, resumed where it broke
        wait_for(driver, "document.body.dataset.stream === 'fresh'")
        server.on_loop(server.feed.close)
        server.publish(state("speaking", "idle"))
        server.publish(TranscriptFinal(t=now(), text="And the date?"), "t2")
        wait_for(driver, "document.body.dataset.stream === 'resumed'", what="a resumed stream")
        wait_for(driver, "document.querySelectorAll('.exchange').length === 2 && "
                         "document.querySelector('.exchange:last-child .user').textContent === 'And the date?'")
        assert driver.execute_script("return document.body.dataset.state") == "idle"

        # a page opened afresh draws the same from the snapshot
        driver.get(server.url)
        wait_for(driver, "document.body.dataset.stream === 'fresh' && document.querySelectorAll('.exchange').length === 2")
        assert driver.find_element("css selector", ".exchange .agent").text == "It is ten o'clock."
        assert not driver.find_element("id", "timers").get_attribute("hidden")


def request(server: PageServer, method: str, path: str, body: object = None, host: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.config.ui.port, timeout=10)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if host:
        all_headers["Host"] = host
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=all_headers)
    response = connection.getresponse()
    status, data = response.status, json.loads(response.read() or b"{}")
    connection.close()
    return status, data


def first_messages(server: PageServer, host: str, until: str = "TranscriptFinal") -> list[dict]:
    """The event stream's messages up to the first of type ``until``, as a viewer asking for ``host`` gets them."""
    connection = http.client.HTTPConnection("127.0.0.1", server.config.ui.port, timeout=10)
    connection.request("GET", "/events", headers={"Host": host})
    response = connection.getresponse()
    messages = []
    while not messages or messages[-1]["type"] != until:
        line = response.fp.readline().decode()
        if line.startswith("data: "):
            messages.append(json.loads(line[6:]))
    connection.close()
    return messages


def test_controls_and_transcripts_stay_on_the_device_unless_a_token_and_include_text_say_otherwise():
    server = PageServer(token="s3cret")
    try:
        lan = "kiosk.example:8088"  # a Host that is not loopback: someone reaching the device from elsewhere
        assert request(server, "POST", "/api/mute", {"mute": True}, host=lan)[0] == 401
        assert server.remote.device_state.muted is False
        assert request(server, "POST", "/api/mute", {"mute": True}, host=lan,
                       headers={"Authorization": "Bearer wrong"})[0] == 401
        status, result = request(server, "POST", "/api/mute", {"mute": True}, host=lan,
                                 headers={"Authorization": "Bearer s3cret"})
        assert (status, result) == (200, {"ok": True, "mute": True}) and server.remote.device_state.muted
        # the device's own screen needs no token; a form post from another site is refused
        assert request(server, "POST", "/api/mute", {"mute": False})[1] == {"ok": True, "mute": False}
        assert request(server, "POST", "/api/mute", {"mute": True}, headers={"Content-Type": "text/plain"})[0] == 403
        assert request(server, "POST", "/api/mute", {"mute": True}, headers={"Origin": "http://evil.example"})[0] == 403
        assert request(server, "POST", "/api/volume", {"volume": 3})[0] == 400
        assert request(server, "POST", "/api/volume", {"volume": 0.25})[1] == {"ok": True, "volume": 0.25}
        status, result = request(server, "POST", "/api/listen", {})
        assert status == 409 and "starting" in result["error"]  # no voice loop behind this remote

        server.publish(TranscriptFinal(t=now(), text="my secret question"), "t1")
        local = first_messages(server, host=f"127.0.0.1:{server.config.ui.port}")
        remote = first_messages(server, host=lan)
        assert local[0]["type"] == "hello" and local[0]["controls"] and local[0]["text"]
        assert local[-1]["text"] == "my secret question"
        assert remote[0]["controls"] is False and remote[0]["text"] is False
        assert remote[-1]["text"] is None
        server.remote.device_state.config.telemetry.include_text = True  # live config: text may leave the device
        assert first_messages(server, host=lan)[-1]["text"] == "my secret question"
    finally:
        server.close()
