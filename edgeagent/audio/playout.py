"""Streaming speech output: text chunks in, audio frames out to a sink as soon as each is made.

Each chunk is synthesized on a dedicated worker thread the moment it arrives (the loop never
blocks on inference), the audio is resampled to the sink rate and cut into frames, and a
playout task hands frames to the sink at real-time pace, keeping only a small jitter buffer
ahead.  ``cancel()`` fades the sound out within a frame, drops everything queued and the rest
of the synthesis, and the returned ``Heard`` says what the listener actually heard.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterable, Callable

import numpy as np

from edgeagent.audio.base import AudioOut
from edgeagent.audio.convert import StreamResampler, resample
from edgeagent.audio.frames import frame_samples
from edgeagent.audio.sound import Sound
from edgeagent.config import AudioConfig
from edgeagent.events import ChunkQueued, Event, FirstAudio, FirstSynth, Heard, Spoken
from edgeagent.tts.base import Synthesizer
from edgeagent.tts.captions import spoken_text

HEARD_FRACTION = 0.5  # a chunk counts as heard once at least half of its audio has played
DUCK_GAIN = 0.2  # -14 dB while someone may be talking over the reply: they hear it yield, it is not lost


@dataclass
class _Chunk:
    text: str
    samples: int = 0  # at the sink rate
    played: int = 0
    complete: bool = False  # synthesized in full: ``samples`` is its length


async def _uninterrupted(awaitable) -> object:
    """Await to the end even if our task is cancelled meanwhile, then re-raise the cancellation.  A
    reply's chunk stream closes with awaits (an LLM's HTTP response); cut short there, the inner
    streams stay open for the garbage collector to finalize all at once."""
    future = asyncio.ensure_future(awaitable)
    interrupted = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    return future.result()


class Speaker:
    """Speaks one reply at a time into ``sink`` (WavSink, PyAudioSpeaker, EchoTap, ...), reporting
    ChunkQueued, FirstSynth, FirstAudio and Spoken (captions, as playback goes) as they happen and
    returning what was Heard.

    ``realtime=False`` writes as fast as audio is made (rendering to a file)."""

    def __init__(self, synthesizer: Synthesizer, sink: AudioOut, *, frame_ms: int = 20, jitter_ms: int = 40,
                 fade_ms: float = 5.0, realtime: bool = True, clock: Callable[[], float] = time.monotonic,
                 volume: float = 1.0):
        self.synthesizer = synthesizer
        self.volume = volume  # output level 0..1 (audio.volume, the fleet's `volume` command); read per frame
        self.sink = sink
        self.rate = int(sink.sample_rate)
        self.frame = frame_samples(frame_ms, self.rate)
        self.frame_s = frame_ms / 1000
        self.jitter = frame_samples(jitter_ms, self.rate)
        self.fade = max(1, int(self.rate * fade_ms / 1000))
        self.realtime = realtime
        self.clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tts")
        self._reset()

    def configure(self, audio: AudioConfig) -> None:
        """Live config: the output level from the next frame on."""
        self.set_volume(audio.volume)

    def set_volume(self, volume: float) -> None:
        self.volume = volume

    def duck(self, ducked: bool) -> None:
        """Lower the reply from the next frame on (a possible barge-in), or bring it back."""
        self._gain = DUCK_GAIN if ducked else 1.0

    def _reset(self, emit: Callable[[Event], None] = lambda event: None, hold: asyncio.Event | None = None) -> None:
        self._emit = emit
        self._hold = hold
        self._gain = 1.0
        self._synthesized = False
        self._chunks: list[_Chunk] = []
        self._frames: asyncio.Queue[tuple[int, np.ndarray] | None] = asyncio.Queue()
        self._queued = 0
        self._written = 0
        self._stop = threading.Event()
        self._cancelled = asyncio.Event()
        self._synth_done = asyncio.Event()
        self._fade: asyncio.Task | None = None
        self._caption = ""

    # ------------------------------------------------------------------ public

    async def speak(self, chunks: AsyncIterable[str | Sound], emit: Callable[[Event], None] = lambda event: None,
                    hold: asyncio.Event | None = None) -> Heard:
        """Synthesize and play every chunk; returns when playback ends or is cancelled.  With ``hold``,
        synthesis starts at once but nothing plays until ``hold`` is set (a speculative reply)."""
        self._reset(emit, hold)
        self.sink.on_first_play = lambda t: emit(FirstAudio(t=t))
        synth = asyncio.create_task(self._synthesize_all(chunks), name="tts-synth")
        try:
            await self._playout()
            if not self._cancelled.is_set():
                self._report_spoken(self._written)  # all of it: the sink plays what it holds
        finally:
            if not self._synth_done.is_set():  # still reading chunks; once done it is only closing them
                synth.cancel()
            await asyncio.gather(synth, return_exceptions=True)  # a cancelled gather still waits for synth
            if self._fade is not None:
                await self._fade  # the sink may be closed right after we return
        if not synth.cancelled() and synth.exception() is not None and not self._cancelled.is_set():
            raise synth.exception()  # type: ignore[misc]  # e.g. TtsError from the engine
        return self._finished()

    async def say(self, text: str) -> Heard:
        async def one():
            yield text

        return await self.speak(one())

    def cancel(self) -> None:
        """Barge-in: fade out within one frame, drop queued audio, stop synthesis.  Safe to call
        from the event loop at any time; ``speak`` then returns with ``cancelled=True``."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        self._stop.set()
        dropped = self.sink.clear()
        self._written -= dropped
        self._account(-dropped)
        # A sink still holding audio fades it out itself; one that has played everything it was
        # given stops at a full-level sample, so fade the next frame we had not yet written.
        still_playing = dropped or self.sink.queued_samples
        never_played = not self._written  # e.g. a held reply: not even a faded frame of it is heard
        fade = np.zeros(0, np.int16) if still_playing or never_played else self._faded(self._peek_next()[: self.fade])
        while not self._frames.empty():
            self._frames.get_nowait()
        self._queued = 0
        self._report_spoken(self._written - self.sink.queued_samples, stopped=True)
        if len(fade):
            self._fade = asyncio.get_running_loop().create_task(self.sink.write(fade))

    @property
    def backlog_s(self) -> float:
        """Audio made but not yet handed to the sink (a ringing chime keeps about one period ahead)."""
        return self._queued / self.rate

    def heard(self) -> Heard:
        """What the current (or last) reply has played so far; for callers interrupted mid-speak."""
        return self._finished()

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ synthesis

    async def _synthesize_all(self, chunks: AsyncIterable[str]) -> None:
        loop = asyncio.get_running_loop()
        resampler = StreamResampler(self.synthesizer.sample_rate, self.rate)
        try:
            async for text in chunks:
                if self._cancelled.is_set():
                    break
                if isinstance(text, Sound):  # ready-made audio: played as it is
                    self._play_sound(text)
                    continue
                if not text.strip():
                    continue
                index = len(self._chunks)
                self._chunks.append(_Chunk(text.strip()))
                self._emit(ChunkQueued(t=self.clock(), text=text.strip(), index=index))
                blocks: asyncio.Queue[np.ndarray | BaseException | None] = asyncio.Queue()
                loop.run_in_executor(self._executor, self._synthesize_chunk, text, blocks, loop, self._stop)
                while (block := await blocks.get()) is not None:
                    if isinstance(block, BaseException):
                        raise block
                    if not self._synthesized:
                        self._synthesized = True
                        self._emit(FirstSynth(t=self.clock()))
                    self._enqueue(index, resampler.process(block))
                self._chunks[index].complete = True
            if not self._cancelled.is_set():
                self._enqueue(len(self._chunks) - 1, resampler.process(np.zeros(0, np.int16), last=True))
        finally:
            self._synth_done.set()
            self._frames.put_nowait(None)
            # Close the chunk stream here, in order, rather than leave it to the garbage collector: the
            # reply's nested generators (chunker <- router <- LLM stream) would each be finalized at once
            # and collide ("aclose(): asynchronous generator is already running").
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await _uninterrupted(close())

    def _play_sound(self, sound: Sound) -> None:
        index = len(self._chunks)
        self._chunks.append(_Chunk(sound.label))
        self._emit(ChunkQueued(t=self.clock(), text=sound.label, index=index))
        if not self._synthesized:
            self._synthesized = True
            self._emit(FirstSynth(t=self.clock()))
        samples = sound.samples if sound.rate == self.rate else resample(sound.samples, sound.rate, self.rate)
        self._enqueue(index, np.asarray(samples, dtype=np.int16))

    def _synthesize_chunk(self, text: str, blocks: asyncio.Queue, loop: asyncio.AbstractEventLoop,
                          stop: threading.Event) -> None:
        """Worker thread: pass each block to the loop as soon as the engine yields it; ``stop``
        (this reply's, set by cancel) abandons the rest."""
        stream = self.synthesizer.synthesize(text)
        try:
            for block in stream:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(blocks.put_nowait, np.asarray(block, dtype=np.int16))
        except BaseException as exc:  # handed to the loop, raised there
            loop.call_soon_threadsafe(blocks.put_nowait, exc)
        finally:
            getattr(stream, "close", lambda: None)()  # e.g. kills an abandoned espeak-ng process
            loop.call_soon_threadsafe(blocks.put_nowait, None)

    def _enqueue(self, index: int, pcm: np.ndarray) -> None:
        if index < 0 or len(pcm) == 0:
            return
        self._chunks[index].samples += len(pcm)
        for start in range(0, len(pcm), self.frame):
            frame = pcm[start : start + self.frame]
            self._frames.put_nowait((index, frame))
            self._queued += len(frame)

    # ------------------------------------------------------------------ playout

    async def _playout(self) -> None:
        """Hand frames to the sink at real-time pace, one frame ahead of the device."""
        start = None
        sent_s = 0.0
        if self._hold is not None:  # made ahead, played once released (or dropped unheard)
            await self._wait_any(self._hold.wait(), self._cancelled.wait())
        while not self._cancelled.is_set():
            if start is None and self.realtime:  # fill the jitter buffer first (or take a short reply whole)
                await self._wait_any(self._until_buffered(), self._synth_done.wait())
                if self._cancelled.is_set():
                    break
            item = await self._next_frame()
            if item is None:
                break
            index, frame = item
            self._queued -= len(frame)
            now = self.clock()
            if self.realtime:
                if start is None or now > start + sent_s + self.frame_s:  # first frame or an underrun
                    start, sent_s = now, 0.0
                delay = start + sent_s - self.frame_s - now  # keep one frame queued in the device
                if delay > 0:
                    await self._wait_any(asyncio.sleep(delay), self._cancelled.wait())
                    if self._cancelled.is_set():
                        self._frames.put_nowait((index, frame))  # cancel() fades from it
                        break
            if self.volume * self._gain != 1.0:
                frame = np.clip(frame * (self.volume * self._gain), -32768, 32767).astype(np.int16)
            await self.sink.write(frame)
            self._written += len(frame)
            self._chunks[index].played += len(frame)
            sent_s += len(frame) / self.rate
            self._report_spoken(self._written - self.sink.queued_samples)

    async def _next_frame(self) -> tuple[int, np.ndarray] | None:
        if not self._frames.empty():
            return self._frames.get_nowait()
        get = asyncio.ensure_future(self._frames.get())
        await self._wait_any(get, self._cancelled.wait())
        if not get.done():
            get.cancel()
            return None
        return get.result()

    async def _until_buffered(self) -> None:
        while self._queued < self.jitter and not self._synth_done.is_set():
            await asyncio.sleep(0.002)

    @staticmethod
    async def _wait_any(*aws) -> None:
        tasks = [asyncio.ensure_future(a) for a in aws]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()

    # ------------------------------------------------------------------ accounting

    def _peek_next(self) -> np.ndarray:
        try:
            item = self._frames.get_nowait()
        except asyncio.QueueEmpty:
            return np.zeros(0, np.int16)
        return item[1] if item else np.zeros(0, np.int16)

    def _faded(self, samples: np.ndarray) -> np.ndarray:
        ramp = np.linspace(1.0, 0.0, len(samples), endpoint=False, dtype=np.float32)
        return (samples.astype(np.float32) * ramp).astype(np.int16)

    def _account(self, delta: int) -> None:
        """Take samples the sink dropped back off the chunks they belonged to (newest first)."""
        for chunk in reversed(self._chunks):
            if delta >= 0:
                return
            take = min(chunk.played, -delta)
            chunk.played -= take
            delta += take

    def _report_spoken(self, position: int, stopped: bool = False) -> None:
        """Captions: the words heard by ``position`` (samples out of the speaker), when they change.
        A sentence still being synthesized grows as its audio comes in, so the same position covers
        fewer of its words: while playing, a caption never takes a word back (the screen would flicker);
        the stop reports where the voice really was."""
        text = spoken_text(((c.text, c.samples, c.complete) for c in self._chunks), position)
        if not stopped and len(text) < len(self._caption) and self._caption.startswith(text):
            return
        if text != self._caption or stopped:
            self._caption = text
            self._emit(Spoken(t=self.clock(), text=text, played_ms=round(1000.0 * max(0, position) / self.rate, 1),
                              stopped=stopped))

    def _finished(self) -> Heard:
        heard = [c.text for c in self._chunks if c.text and c.samples and c.played >= HEARD_FRACTION * c.samples]
        played_ms = 1000.0 * self._written / self.rate
        return Heard(t=self.clock(), text=" ".join(heard), played_ms=round(played_ms, 1),
                     cancelled=self._cancelled.is_set())
