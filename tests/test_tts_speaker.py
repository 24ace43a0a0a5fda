import asyncio
import time

import numpy as np
import pytest
import soundfile

from edgeagent.audio.timeline import FADE_SAMPLES, ClockedSink
from edgeagent.audio.wav import read_audio
from edgeagent.audio.playout import Speaker
from edgeagent.events import FirstAudio
from tests.tts_helpers import EventLog, TimedWavSink, synthesizer

REPLY = [
    "The weather today is sunny and warm.",
    "Tomorrow brings some light rain in the afternoon.",
    "Take an umbrella if you go out in the evening.",
]


class StampedVoice:
    """The real piper voice, noting when each block left the engine."""

    def __init__(self, voice):
        self.voice, self.name, self.sample_rate = voice, voice.name, voice.sample_rate
        self.block_times: list[float] = []

    def synthesize(self, text):
        for block in self.voice.synthesize(text):
            self.block_times.append(time.monotonic())
            yield block


async def _chunks(texts, gap_s=0.0):
    for text in texts:
        yield text
        await asyncio.sleep(gap_s)


def test_first_frames_reach_the_sink_before_the_whole_reply_is_synthesized(tmp_path):
    voice = StampedVoice(synthesizer("piper"))
    sink = TimedWavSink(tmp_path / "out.wav", voice.sample_rate)
    speaker = Speaker(voice, sink, realtime=False)
    events = EventLog()
    finished = asyncio.run(speaker.speak(_chunks(REPLY), emit=events))
    asyncio.run(sink.close())
    assert len(voice.block_times) == 3
    assert sink.writes[0][0] < voice.block_times[-1], "audio waited for the whole reply"
    assert events.first(FirstAudio).t < voice.block_times[1]
    assert finished.text == " ".join(REPLY) and not finished.cancelled
    data, rate = soundfile.read(tmp_path / "out.wav", dtype="int16")
    assert rate == voice.sample_rate and abs(len(data) / rate - finished.played_ms / 1000) < 0.05


def test_output_is_resampled_to_the_sink_rate(tmp_path):
    voice = synthesizer("espeak")
    sink = TimedWavSink(tmp_path / "out.wav", 48000)
    finished = asyncio.run(Speaker(voice, sink, realtime=False).say("Resampled to the device rate."))
    asyncio.run(sink.close())
    data, rate = soundfile.read(tmp_path / "out.wav", dtype="int16")
    assert rate == 48000
    assert abs(len(data) / 48000 - finished.played_ms / 1000) < 0.05
    assert len(data) / 48000 > 1.0


def test_cancel_mid_sentence_goes_silent_within_a_frame_and_reports_what_was_heard(tmp_path):
    voice = synthesizer("espeak")
    sink = TimedWavSink(tmp_path / "out.wav", voice.sample_rate)
    speaker = Speaker(voice, sink, frame_ms=20, realtime=True)
    texts = ["Okay.", "Here is a much longer second sentence that keeps talking for several seconds, on and on."]

    async def scenario():
        events = EventLog()
        task = asyncio.create_task(speaker.speak(_chunks(texts), emit=events))
        await events.until(FirstAudio)
        await asyncio.sleep(1.4)
        speaker.cancel()
        cancelled_at = time.monotonic()
        finished = await asyncio.wait_for(task, 1.0)
        await asyncio.sleep(0.05)  # the fade write lands
        return finished, cancelled_at

    finished, cancelled_at = asyncio.run(scenario())
    asyncio.run(sink.close())
    assert finished.cancelled
    assert finished.text == "Okay."  # the long sentence was cut before half of it played
    assert 1.2 < finished.played_ms / 1000 < 1.6
    frame = int(0.02 * voice.sample_rate)
    after = np.concatenate([w for t, w in sink.writes if t >= cancelled_at] or [np.zeros(0, np.int16)])
    assert len(after) <= frame, "audio kept coming after cancel"
    if len(after):  # the fade: decaying, ending near zero (no click)
        assert abs(int(after[-1])) < 300
        assert np.abs(after[-len(after) // 4 :]).max() <= np.abs(after[: len(after) // 4]).max() + 1
    total = len(sink.audio()) / voice.sample_rate
    assert total < 2.5, "the whole reply was played"


def test_cancel_on_a_queueing_sink_fades_once_then_silence(tmp_path):
    """The daemon's sinks queue audio and fade it out on clear(): the speaker must not add a second,
    full-level fade after that one (a click)."""
    sink = ClockedSink(tmp_path / "out.wav", frame_ms=20)
    speaker = Speaker(synthesizer("espeak"), sink, frame_ms=20, realtime=False)
    played_frames = 50

    async def scenario():
        task = asyncio.create_task(speaker.speak(_chunks(["Here is a long sentence that keeps on talking for a while."])))
        for _ in range(played_frames):  # one second played; the sink keeps up to 200 ms queued ahead
            await asyncio.sleep(0.01)
            sink.tick()
        assert sink.queued_samples > FADE_SAMPLES
        speaker.cancel()
        await asyncio.wait_for(task, 2.0)
        await asyncio.sleep(0.05)
        for _ in range(25):
            sink.tick()
        await sink.close()

    asyncio.run(scenario())
    audio = read_audio(tmp_path / "out.wav")
    before, after = audio[: played_frames * 320], audio[played_frames * 320 :]
    assert np.abs(before).max() > 3000  # it was talking
    assert np.abs(after[FADE_SAMPLES:]).max() == 0  # one 5 ms fade, then silence
    assert abs(int(after[FADE_SAMPLES - 1])) <= abs(int(before[-1])) + 1


def test_empty_chunks_are_skipped_and_an_empty_reply_plays_nothing(tmp_path):
    sink = TimedWavSink(tmp_path / "out.wav", 22050)
    finished = asyncio.run(Speaker(synthesizer("espeak"), sink, realtime=False).speak(_chunks(["", "  "])))
    asyncio.run(sink.close())
    assert finished.played_ms == 0 and finished.text == "" and not finished.cancelled


def test_cancel_while_synthesis_is_still_running_stops_everything(tmp_path):
    voice = StampedVoice(synthesizer("piper"))
    sink = TimedWavSink(tmp_path / "out.wav", voice.sample_rate)
    speaker = Speaker(voice, sink, realtime=True)

    async def scenario():
        events = EventLog()
        task = asyncio.create_task(speaker.speak(_chunks(REPLY), emit=events))
        await events.until(FirstAudio, poll_s=0.001)
        speaker.cancel()
        finished = await asyncio.wait_for(task, 2.0)
        await asyncio.sleep(1.5)  # no later sentence may reach the sink
        return finished

    finished = asyncio.run(scenario())
    asyncio.run(sink.close())
    assert finished.cancelled and finished.text == ""
    assert len(voice.block_times) < 3  # the rest of the reply was never synthesized
    assert len(sink.audio()) <= 3 * int(0.02 * voice.sample_rate)


def test_a_failing_engine_raises_from_speak(tmp_path):
    from edgeagent.tts.base import TtsError

    class Broken:
        name, sample_rate = "broken", 22050

        def synthesize(self, text):
            raise TtsError("voice exploded")
            yield

    sink = TimedWavSink(tmp_path / "out.wav", 22050)
    with pytest.raises(TtsError, match="voice exploded"):
        asyncio.run(Speaker(Broken(), sink, realtime=False).say("hello"))


@pytest.mark.parametrize("stopped_by", ["barge-in with the next token", "reply task cancelled mid-close"])
def test_a_reply_stopped_early_closes_its_chunk_stream_in_order(tmp_path, stopped_by):
    """The reply's chunks come from nested async generators (chunker <- router <- LLM HTTP stream),
    each closing the next with an await.  Left to the garbage collector after a cancel, all of them
    were finalized at once and each aclose() hit one already closing: 'aclose(): asynchronous
    generator is already running' errors in the daemon's log (seen in make bench)."""
    import gc

    closed: list[str] = []
    sink = TimedWavSink(tmp_path / "out.wav", 22050)
    speaker = Speaker(synthesizer("espeak"), sink, realtime=True)
    events = EventLog()
    errors: list[dict] = []
    closing = asyncio.Event()

    async def llm():
        try:
            yield REPLY[0]
            await events.until(FirstAudio, poll_s=0.001)
            speaker.cancel()  # the barge-in lands with the next token: the speaker closes us while
            yield REPLY[1]  # speak() winds down and cancels its synthesis task
        finally:
            closing.set()
            await asyncio.sleep(0.05)  # closing an HTTP stream awaits
            closed.append("llm")

    async def chunker(holder):
        stream = llm()
        try:
            async for text in stream:
                yield text
        finally:
            await stream.aclose()
            closed.append("chunker")

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        holder: list = []
        chunks = chunker(holder)
        holder.append(chunks)  # a reference cycle, as tracebacks and closures make in the daemon
        task = asyncio.create_task(speaker.speak(chunks, emit=events))
        if stopped_by == "reply task cancelled mid-close":  # as Reply.cancel() does to its task
            await closing.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 5.0)
        else:
            assert (await asyncio.wait_for(task, 5.0)).cancelled
        assert closed == ["llm", "chunker"]  # closed by the speaker, in order, before it returned
        del chunks, holder
        gc.collect()
        await asyncio.sleep(0.2)

    asyncio.run(scenario())
    asyncio.run(sink.close())
    assert [str(e.get("exception") or e.get("message")) for e in errors] == []
    assert closed == ["llm", "chunker"]
