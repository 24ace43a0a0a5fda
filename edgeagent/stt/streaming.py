"""Feeds a whole-utterance recognizer from the event loop without ever blocking it.

Audio is collected on the loop (cheap); decoding runs on one dedicated worker thread.  While
the user speaks, a partial decode runs whenever the worker is idle (at most every
``partial_interval_s``); once the endpointer reports trailing silence, ``speculate()`` starts
the final decode early, and ``finish()`` returns that result at once if no speech followed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Callable

import numpy as np

from edgeagent.audio.frames import Frame
from edgeagent.events import TranscriptFinal, TranscriptPartial
from edgeagent.stt.base import Transcript


class UtteranceTranscriber:
    def __init__(self, recognizer, on_partial: Callable[[TranscriptPartial], None] = lambda p: None,
                 partial_interval_s: float = 1.0):
        self.recognizer = recognizer
        self.on_partial = on_partial
        self.partial_interval_s = partial_interval_s
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stt")
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._utterance = 0  # bumped by start/reset so stale results are ignored
        self._busy: concurrent.futures.Future | None = None
        self._last_partial = 0.0
        self._speculation: tuple[int, concurrent.futures.Future] | None = None

    def start(self, preroll: np.ndarray | None = None) -> None:
        self._utterance += 1
        self._chunks, self._samples, self._speculation = [], 0, None
        self._last_partial = time.monotonic()
        if preroll is not None and len(preroll):
            self._append(preroll)

    def feed(self, frame: Frame) -> None:
        self._append(frame.samples)
        now = time.monotonic()
        if self._speculation is None and (self._busy is None or self._busy.done()) \
                and now - self._last_partial >= self.partial_interval_s:
            self._last_partial = now
            self._busy = self._submit(self._partial_done)

    def speculate(self) -> None:
        """Trailing silence began: decode what we have now, in case the user has finished."""
        if self._speculation is None:
            self._speculation = (self._samples, self._submit(None))

    def cancel_speculation(self) -> None:
        """Speech resumed: the speculative result no longer covers the utterance."""
        self._speculation = None

    async def finish(self) -> TranscriptFinal:
        """The final transcript; reuses the speculative decode unless speech resumed after it."""
        speculation, self._speculation = self._speculation, None
        future = speculation[1] if speculation is not None else self._submit(None)
        result: Transcript = await asyncio.wrap_future(future)
        return TranscriptFinal(t=time.monotonic(), text=result.text, confidence=result.confidence,
                               engine=self.recognizer.name)

    def reset(self) -> None:
        self._utterance += 1
        self._chunks, self._samples, self._speculation = [], 0, None

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _append(self, samples: np.ndarray) -> None:
        self._chunks.append(samples)
        self._samples += len(samples)

    def _submit(self, done: Callable | None) -> concurrent.futures.Future:
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        future = self._worker.submit(self.recognizer.decode, audio)
        if done is not None:
            utterance = self._utterance
            loop = asyncio.get_running_loop()

            def deliver(f: concurrent.futures.Future) -> None:
                try:
                    loop.call_soon_threadsafe(done, utterance, f)
                except RuntimeError:  # the loop closed while decoding (shutdown): nobody to tell
                    pass

            future.add_done_callback(deliver)
        return future

    def _partial_done(self, utterance: int, future: concurrent.futures.Future) -> None:
        if utterance == self._utterance and not future.cancelled() and future.exception() is None:
            text = future.result().text
            if text:
                self.on_partial(TranscriptPartial(t=time.monotonic(), text=text))
