"""The asyncio face of a blocking recognizer: frames in, partial events out, a final on demand.

Every call into the recognizer runs on ONE dedicated worker thread, in submission order, so
the engine never sees concurrent calls and the event loop never waits on inference (``feed``
only enqueues).  ``reset()`` (barge-in) bumps a generation number: work queued for the old
utterance is skipped, and partials from it are never delivered.
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


class StreamingTranscriber:
    """One utterance at a time: ``feed`` frames, partials go to ``on_partial``, ``await finish()``,
    ``await reset()``.  Partials are delivered, not queued: nothing piles up in a daemon that runs for months."""

    def __init__(self, recognizer: Recognizer, input_rate: int = SAMPLE_RATE,
                 on_partial: Callable[[TranscriptPartial], None] | None = None):
        self.recognizer = recognizer
        self.input_rate = input_rate
        self.on_partial = on_partial
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stt-{recognizer.name}")
        self._generation = 0
        self._open = False  # an utterance has been started on the worker
        self._resampler = StreamResampler(input_rate, SAMPLE_RATE)

    # ------------------------------------------------------------ event-loop side

    def feed(self, frame: Frame | np.ndarray) -> None:
        """Queue one frame (int16 mono at ``input_rate``); returns at once."""
        samples = frame.samples if isinstance(frame, Frame) else frame
        if not self._open:
            self._open = True
            self._submit(self._start_on_worker)
        future = self._submit(self._feed_on_worker, np.array(samples, dtype=np.int16, copy=True))
        generation, loop = self._generation, asyncio.get_running_loop()
        future.add_done_callback(lambda f: self._deliver(f, loop, generation))

    async def finish(self) -> TranscriptFinal:
        """Wait for queued frames, end the utterance and return its final transcript."""
        generation = self._generation
        self._open = False
        transcript = await asyncio.wrap_future(self._submit(self._finish_on_worker))
        if transcript is None or generation != self._generation:  # reset() raced with us
            return TranscriptFinal(t=time.monotonic(), text="", confidence=None, engine=self.recognizer.name)
        return TranscriptFinal(t=time.monotonic(), text=transcript.text, confidence=transcript.confidence,
                               engine=self.recognizer.name)

    def settled_text(self) -> str | None:
        """What the engine already knows the utterance says, if it decoded it during the pause
        (whisper's speculation); None for engines without that, or while the talker goes on."""
        settled = getattr(self.recognizer, "settled_text", None)
        return settled() if settled is not None and self._open else None

    async def reset(self) -> None:
        """Drop the current utterance and everything queued for it (barge-in, cancelled turn)."""
        self._generation += 1
        self._open = False
        await asyncio.wrap_future(self._executor.submit(self._reset_on_worker))

    def shutdown(self) -> None:
        """Synchronous stop for shutdown paths without a running loop: drop queued work, end the thread."""
        self._generation += 1
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop the worker thread.  The recognizer stays open: whoever created it closes it."""
        self._generation += 1
        await asyncio.wrap_future(self._executor.submit(self.recognizer.reset))
        self._executor.shutdown(wait=False)

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
