"""The page's feed (numbered typed events, resume, snapshot, redaction, slow pages), who may do what,
and the raw-PCM pipe that lets a program be the daemon's microphone."""

import asyncio
import json
import os
import time

import numpy as np
import pytest

from edgeagent.audio.pipe import PipeSource
from edgeagent.events import AgentState, MicrophoneStatus, Spoken, StateChanged, TranscriptFinal, TranscriptPartial
from edgeagent.ui.access import host_name, same_origin, viewer
from edgeagent.ui.feed import Feed


def changed(new: str) -> StateChanged:
    return StateChanged(t=time.monotonic(), old=AgentState.IDLE, new=AgentState(new))


def decoded(messages, text=True) -> list[dict]:
    return [json.loads(m.full if text else m.redacted) for m in messages]


def test_events_travel_in_their_own_vocabulary_with_a_number_a_turn_and_a_time():
    feed = Feed()
    event = TranscriptFinal(t=time.monotonic() - 0.5, text="hello", confidence=0.9, engine="whisper")
    feed.publish(event, "turn-1")
    (message,) = decoded(feed.snapshot())
    assert message["type"] == "TranscriptFinal" and message["turn"] == "turn-1" and message["seq"] == 1
    assert (message["text"], message["confidence"], message["engine"]) == ("hello", 0.9, "whisper")
    assert abs(message["sent"] - message["at"] - 0.5) < 0.05  # the event's own time, on the wall clock
    feed.publish(changed("listening"))
    assert decoded(feed.snapshot())[-1]["new"] == "listening"
    assert decoded(feed.snapshot(), text=False)[0]["text"] is None


def test_a_reconnect_resumes_after_the_last_message_seen_else_gets_a_snapshot():
    async def main():
        feed = Feed(keep=5)
        for text in ("a", "b", "c"):
            feed.publish(TranscriptPartial(t=time.monotonic(), text=text), "t1")
        last_seen = feed.message_id(feed.snapshot()[-1])
        feed.publish(TranscriptPartial(t=time.monotonic(), text="d"), "t1")
        subscription, missed, resumed = feed.subscribe(last_seen, text=True)
        assert resumed and [m["text"] for m in decoded(missed)] == ["d"]
        feed.publish(TranscriptFinal(t=time.monotonic(), text="e"), "t1")
        assert json.loads(subscription.queue.get_nowait().full)["text"] == "e"  # and on from there
        other_process = "0000-3"
        assert feed.subscribe(other_process, text=True)[2] is False
        for text in "fghij":
            feed.publish(TranscriptPartial(t=time.monotonic(), text=text), "t2")
        assert feed.subscribe(last_seen, text=True)[2] is False  # more was missed than is kept
        feed.close()
        rest = [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]
        assert len(rest) == 6 and rest[-1] is None  # f..j, then the end of the stream
    asyncio.run(main())


def test_a_snapshot_is_the_latest_state_and_the_last_turns_without_what_later_events_replaced():
    feed = Feed(keep_turns=2)
    feed.publish(MicrophoneStatus(t=time.monotonic(), ok=False, detail="gone"))
    for turn in ("t1", "t2", "t3"):
        feed.publish(changed("listening"), turn)
        feed.publish(TranscriptPartial(t=time.monotonic(), text=f"{turn} partial"), turn)
        feed.publish(TranscriptFinal(t=time.monotonic(), text=f"{turn} final"), turn)
        feed.publish(Spoken(t=time.monotonic(), text="It", played_ms=100), turn)
        feed.publish(Spoken(t=time.monotonic(), text="It is", played_ms=200), turn)
    feed.publish(MicrophoneStatus(t=time.monotonic(), ok=True, detail="audio ok"))
    feed.publish_device({"state": "idle", "voice_loop": True, "mute": True, "volume": 0.5})
    got = [(m["type"], m["turn"], m.get("text") or m.get("new") or m.get("detail") or m.get("mute"))
           for m in decoded(feed.snapshot())]
    assert got == [("TranscriptFinal", "t2", "t2 final"), ("Spoken", "t2", "It is"),
                   ("StateChanged", "t3", "listening"), ("TranscriptFinal", "t3", "t3 final"), ("Spoken", "t3", "It is"),
                   ("MicrophoneStatus", "", "audio ok"), ("DeviceState", "", True)]


def test_a_page_that_falls_too_far_behind_is_dropped_not_buffered_for_ever():
    async def main():
        feed = Feed(backlog=3)
        subscription, _, _ = feed.subscribe(None, text=True)
        for i in range(10):
            feed.publish(TranscriptPartial(t=time.monotonic(), text=str(i)), "t1")
        queued = [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]
        assert len(queued) == 4 and queued[-1] is None and subscription.ended
    asyncio.run(main())


@pytest.mark.parametrize("peer, host, auth, token, include_text, expected", [
    ("127.0.0.1", "127.0.0.1:8088", None, "", False, (True, True, True)),
    ("::1", "[::1]:8088", None, "", False, (True, True, True)),
    ("127.0.0.1", "localhost:8088", None, "", False, (True, True, True)),
    ("127.0.0.1", "attacker.example:8088", None, "", False, (False, False, False)),  # DNS rebinding
    ("192.0.2.7", "192.0.2.1:8088", None, "tok", False, (False, False, False)),
    ("192.0.2.7", "192.0.2.1:8088", "Bearer tok", "tok", False, (False, True, False)),
    ("192.0.2.7", "192.0.2.1:8088", "Bearer tok", "tok", True, (False, True, True)),
    ("192.0.2.7", "192.0.2.1:8088", "Bearer ", "", False, (False, False, False)),  # no token set: no way in
])
def test_who_may_use_the_controls_and_see_transcripts(peer, host, auth, token, include_text, expected):
    who = viewer(peer, host, auth, token, include_text)
    assert (who.on_device, who.may_control, who.sees_text) == expected


def test_host_names_and_origins():
    assert [host_name(h) for h in ("[::1]:80", "localhost:8088", "127.0.0.1", "::1")] == \
        ["::1", "localhost", "127.0.0.1", "::1"]
    assert same_origin(None, "x:1") and same_origin("http://127.0.0.1:8088", "127.0.0.1:8088")
    assert not same_origin("http://evil.example", "127.0.0.1:8088")


def test_a_pipe_is_a_microphone_paced_by_its_writer():
    read_fd, write_fd = os.pipe()
    samples = (np.arange(320 * 3 + 100) % 1000).astype("<i2")
    os.write(write_fd, samples.tobytes())
    os.close(write_fd)

    async def main():
        with os.fdopen(read_fd, "rb", buffering=0) as stream:
            return [frame async for frame in PipeSource(stream, frame_ms=20).frames()]

    frames = asyncio.run(main())
    assert [f.index for f in frames] == [0, 1, 2] and [f.audio_s for f in frames] == [0.0, 0.02, 0.04]
    assert np.array_equal(np.concatenate([f.samples for f in frames]), samples[:960])  # the torn tail is dropped


def test_the_access_token_is_provisioned_as_a_credential_and_never_shown(tmp_path):
    from edgeagent.config import load_config, to_toml
    from edgeagent.provision import Layout, provision

    layout = Layout.under(tmp_path)
    layout.boot_dir.mkdir(parents=True)
    (layout.boot_dir / "edgeagent.toml").write_text('[device]\nid = "kiosk-7"\n[ui]\nlisten = "0.0.0.0"\ntoken = "tok-123"\n')
    result = provision(layout, {"serial": "s", "machine_id": "m"})
    assert result is not None and result.credentials == ("ui.token",)
    assert "tok-123" not in (layout.etc_dir / "config.toml").read_text()
    config = load_config(layout.etc_dir / "config.toml", env={"CREDENTIALS_DIRECTORY": str(layout.etc_dir / "credentials")})
    assert config.ui.token == "tok-123" and "tok-123" not in to_toml(config)


def test_the_fleet_cannot_move_or_open_the_page(tmp_path):
    """Where the page listens and its token are local facts, like the device id (the trust model)."""
    from edgeagent.config import load_config
    from edgeagent.fleet.remote_config import RemoteConfig

    remote = RemoteConfig(load_config(None, env={}), tmp_path)
    for desired in ({"ui": {"listen": "0.0.0.0"}}, {"ui": {"enabled": True}}, {"ui": {"token": "x"}}):
        assert remote.handle(json.dumps(desired).encode()) is None
        assert remote.last_error["key"].startswith("ui.") and "local config" in remote.last_error["reason"]
    assert remote.current.ui.listen == "127.0.0.1" and not remote.current.ui.enabled
