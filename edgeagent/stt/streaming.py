"""The asyncio face of a blocking recognizer: one utterance at a time, bracketed.

``start(preroll)`` opens an ``Utterance``; its ``audio(frame)`` queues frames, ``finish()`` gives
the final transcript and ``cancel()`` drops it.  Every call into the recognizer runs on ONE
dedicated worker thread, in submission order, so the engine never sees concurrent calls and the
event loop never waits on inference (``audio`` only enqueues).  Each utterance has a generation
number: work queued for one that was cancelled or replaced is skipped, and its partials are
never delivered.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from edgeagent.audio.convert import StreamResampler
from edgeagent.audio.frames import Frame
from edgeagent.events import TranscriptFinal, TranscriptPartial
from edgeagent.stt.base import SAMPLE_RATE, Recognizer


class Utterance:
    """One utterance on the transcriber's worker; made by ``StreamingTranscriber.start``."""

    def __init__(self, transcriber: StreamingTranscriber, generation: int):
        self._transcriber = transcriber
        self._generation = generation

    @property
    def current(self) -> bool:
        return self._generation == self._transcriber._generation

    def audio(self, frame: Frame | np.ndarray) -> None:
        """Queue one frame (int16 mono at the transcriber's input rate); returns at once."""
        if self.current:
            self._transcriber._feed(frame, self._generation)

    async def finish(self) -> TranscriptFinal:
        """Wait for queued frames, end the utterance and return its final transcript ("" if it was cancelled)."""
        engine = self._transcriber.recognizer.name
        transcript = None
        if self.current:
            transcript = await asyncio.wrap_future(self._transcriber._submit(self._transcriber._finish_on_worker))
        if transcript is None or not self.current:  # cancelled meanwhile
            return TranscriptFinal(t=time.monotonic(), text="", confidence=None, engine=engine)
        self._transcriber._generation += 1  # closed: nothing more belongs to it
        return TranscriptFinal(t=time.monotonic(), text=transcript.text, confidence=transcript.confidence,
                               engine=engine)

    async def cancel(self) -> None:
        """Drop the utterance and everything queued for it (no speech after all, a cancelled turn)."""
        if self.current:
            await self._transcriber._drop()

    @property
    def decodes_pauses(self) -> bool:
        """Whether the engine decodes pauses (whisper's speculation), so ``settled_text`` will say something."""
        return hasattr(self._transcriber.recognizer, "settled_text")

    def settled_text(self) -> str | None:
        """What the engine already knows the utterance says, if it decoded it during the pause
        (whisper's speculation); None for engines without that, or while the talker goes on."""
        settled = getattr(self._transcriber.recognizer, "settled_text", None)
        return settled() if settled is not None and self.current else None


class StreamingTranscriber:
    """Owns the recognizer's worker thread; partials go to ``on_partial`` (delivered, not queued:
    nothing piles up in a daemon that runs for months)."""

    def __init__(self, recognizer: Recognizer, input_rate: int = SAMPLE_RATE,
                 on_partial: Callable[[TranscriptPartial], None] | None = None):
        self.recognizer = recognizer
        self.input_rate = input_rate
        self.on_partial = on_partial
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stt-{recognizer.name}")
        self._generation = 0
        self._resampler = StreamResampler(input_rate, SAMPLE_RATE)

    def start(self, preroll: np.ndarray | None = None) -> Utterance:
        """Open an utterance (any open one is dropped), starting with ``preroll`` (the audio just before
        speech; after a barge-in or a talker going on, seconds of it).  It is fed in 20 ms frames, as
        the microphone would: engines that track pauses per frame would take one long block for one
        loud frame."""
        self._generation += 1
        utterance = Utterance(self, self._generation)
        self._submit(self._start_on_worker)
        if preroll is not None and len(preroll):
            step = self.input_rate // 50
            for start in range(0, len(preroll), step):
                utterance.audio(preroll[start : start + step])
        return utterance

    def shutdown(self) -> None:
        """Synchronous stop for shutdown paths without a running loop: drop queued work, end the thread."""
        self._generation += 1
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop the worker thread.  The recognizer stays open: whoever created it closes it."""
        self._generation += 1
        await asyncio.wrap_future(self._executor.submit(self.recognizer.reset))
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------ event-loop side

    def _feed(self, frame: Frame | np.ndarray, generation: int) -> None:
        samples = frame.samples if isinstance(frame, Frame) else frame
        future = self._submit(self._feed_on_worker, np.array(samples, dtype=np.int16, copy=True))
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: self._deliver(f, loop, generation))

    async def _drop(self) -> None:
        self._generation += 1
        await asyncio.wrap_future(self._executor.submit(self._reset_on_worker))

    def _submit(self, fn, *args):
        return self._executor.submit(self._guarded, self._generation, fn, *args)

    def _deliver(self, future, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        """Runs on the worker: hand a new partial to the loop (dropped if the utterance was reset)."""
        if future.cancelled() or future.exception() is not None or not future.result():
            return
        event = TranscriptPartial(t=time.monotonic(), text=future.result())
        try:
            loop.call_soon_threadsafe(self._publish, event, generation)
        except RuntimeError:  # loop closed
            pass

    def _publish(self, event: TranscriptPartial, generation: int) -> None:
        if generation == self._generation and self.on_partial is not None:
            self.on_partial(event)

    # ------------------------------------------------------------ worker side

    def _guarded(self, generation: int, fn, *args):
        if generation != self._generation:
            return None  # queued for an utterance that was reset
        return fn(*args)

    def _start_on_worker(self) -> None:
        self._resampler = StreamResampler(self.input_rate, SAMPLE_RATE)
        self.recognizer.start()

    def _feed_on_worker(self, samples: np.ndarray) -> str | None:
        samples = self._resampler.process(samples)
        return self.recognizer.feed(samples) if len(samples) else None

    def _finish_on_worker(self):
        tail = self._resampler.process(np.zeros(0, np.int16), last=True)
        if len(tail):
            self.recognizer.feed(tail)
        return self.recognizer.finish()

    def _reset_on_worker(self) -> None:
        self._resampler = StreamResampler(self.input_rate, SAMPLE_RATE)
        self.recognizer.reset()
