"""Captions that follow the voice: the words laid along each sentence's audio, and the real Speaker
(espeak-ng into the mic-clocked sink) reporting them word by word, cut where a barge-in stopped it."""

import asyncio

from edgeagent.audio.playout import Speaker
from edgeagent.audio.timeline import ClockedSink
from edgeagent.events import Spoken
from edgeagent.tts.captions import spoken_text, words_reached
from tests.tts_helpers import EventLog, synthesizer

COUNTING = "One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen."


def test_words_show_once_playback_reaches_their_start():
    text = "aa bb cccccc dd"  # weights 3 3 7 3 of 16
    assert words_reached(text, 0.0) == []
    assert words_reached(text, 0.01) == ["aa"]
    assert words_reached(text, 3 / 16 + 0.01) == ["aa", "bb"]
    assert words_reached(text, 12 / 16) == ["aa", "bb", "cccccc"]  # dd starts at 13/16
    assert words_reached(text, 1.0) == text.split()
    assert words_reached(text, 1.0, complete=False) == ["aa", "bb", "cccccc"]  # its length is not known yet


def test_spoken_text_runs_across_sentences_in_playing_order():
    pieces = [("Hello there.", 1000, True), ("How are you today?", 2000, True), ("Not made yet.", 0, False)]
    assert spoken_text(pieces, 0) == ""
    assert spoken_text(pieces, 1000) == "Hello there."
    assert spoken_text(pieces, 1001) == "Hello there. How"
    assert spoken_text(pieces, 5000) == "Hello there. How are you today?"


def tick_until(sink: ClockedSink, done, limit: int = 2000):
    async def run():
        for _ in range(limit):
            if done():
                return
            await asyncio.sleep(0.002)
            sink.tick()
        raise AssertionError("never happened")
    return run()


def captions(events: EventLog) -> list[Spoken]:
    return [e for e in events.events if isinstance(e, Spoken)]


def test_the_speaker_reports_captions_word_by_word_and_cuts_them_where_the_voice_stopped(tmp_path):
    sink = ClockedSink(tmp_path / "out.wav", frame_ms=20)
    speaker = Speaker(synthesizer("espeak"), sink, frame_ms=20, realtime=False)
    events = EventLog()

    async def scenario():
        async def one():
            yield COUNTING

        task = asyncio.create_task(speaker.speak(one(), emit=events))
        await tick_until(sink, lambda: captions(events) and len(captions(events)[-1].text.split()) >= 6)
        played = sink.played_samples
        speaker.cancel()
        await asyncio.wait_for(task, 2.0)
        return played

    played = asyncio.run(scenario())
    asyncio.run(sink.close())
    shown = [c.text.split() for c in captions(events)]
    for before, after in zip(shown, shown[1:-1]):
        assert after[: len(before)] == before and len(after) == len(before) + 1  # one word at a time
    last = captions(events)[-1]
    assert last.stopped and last.text == captions(events)[-2].text  # cut where it was, nothing more shown
    assert 6 <= len(last.text.split()) < len(COUNTING.split())
    assert COUNTING.split()[: len(last.text.split())] == last.text.split()
    assert abs(last.played_ms - played / 16) <= 20  # at the audio that had really played


def test_a_reply_played_in_full_ends_with_every_word(tmp_path):
    sink = ClockedSink(tmp_path / "out.wav", frame_ms=20)
    speaker = Speaker(synthesizer("espeak"), sink, frame_ms=20, realtime=False)
    events = EventLog()
    texts = ["Okay.", "Here are two short sentences."]

    async def scenario():
        async def chunks():
            for text in texts:
                yield text

        task = asyncio.create_task(speaker.speak(chunks(), emit=events))
        await tick_until(sink, task.done)
        return task.result()

    heard = asyncio.run(scenario())
    asyncio.run(sink.close())
    assert captions(events)[-1].text == heard.text == " ".join(texts)
    assert not any(c.stopped for c in captions(events))
