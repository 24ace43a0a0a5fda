"""Acoustic echo cancellation: remove what our own speaker played from the microphone signal.

The reference is what the speaker sink actually played (``EchoReference``, filled by
``EchoTap``), resampled to 16 kHz.  Mic and reference both run in real time, so each mic frame
takes the same number of reference samples from a FIFO; the canceller (WebRTC AEC3 from
``pywebrtc-audio``, extra ``aec``: prebuilt wheels for x86-64 and aarch64) estimates the remaining
acoustic delay itself.
Without that package ``create_echo_canceller`` returns None and barge-in ducks its threshold.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable

import numpy as np

from edgeagent.audio.base import AudioOut
from edgeagent.audio.convert import StreamResampler
from edgeagent.audio.fifo import drain_into
from edgeagent.audio.frames import FRAME_RATE

log = logging.getLogger(__name__)
APM_BLOCK = FRAME_RATE // 100  # WebRTC APM works on 10 ms blocks
MAX_REFERENCE_S = 2.0


class EchoReference:
    """A FIFO of the audio the speaker played (16 kHz int16), written by the playback side and
    read by the listening side; thread-safe because PortAudio callbacks may write to it."""

    def __init__(self, source_rate: int):
        self._resampler = StreamResampler(source_rate, FRAME_RATE)
        self._blocks: collections.deque[np.ndarray] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()

    def played(self, pcm: np.ndarray) -> None:
        block = self._resampler.process(np.asarray(pcm, dtype=np.int16))
        with self._lock:
            self._blocks.append(block)
            self._size += len(block)
            while self._size > MAX_REFERENCE_S * FRAME_RATE:  # nobody reading: keep it bounded
                self._size -= len(self._blocks.popleft())

    def clear(self) -> None:
        """Forget what played before (a reply starts: earlier audio is no longer in the room)."""
        with self._lock:
            self._blocks.clear()
            self._size = 0

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` played samples, zero-padded when the speaker is (or went) silent."""
        out = np.zeros(count, dtype=np.int16)
        with self._lock:
            self._size -= drain_into(self._blocks, out)
        return out


class EchoTap:
    """An AudioOut in front of the real one that copies everything played into an EchoReference."""

    def __init__(self, audio_out: AudioOut, reference: EchoReference):
        self.sink = audio_out
        self.reference = reference
        self.sample_rate = audio_out.sample_rate

    @property
    def on_first_play(self) -> Callable[[float], None] | None:
        return self.sink.on_first_play

    @on_first_play.setter
    def on_first_play(self, callback: Callable[[float], None] | None) -> None:
        self.sink.on_first_play = callback

    async def write(self, pcm: np.ndarray) -> None:
        self.reference.played(pcm)
        await self.sink.write(pcm)

    def clear(self) -> int:
        return self.sink.clear()

    @property
    def queued_samples(self) -> int:
        return self.sink.queued_samples

    async def close(self) -> None:
        await self.sink.close()


class WebRtcEchoCanceller:
    """WebRTC AEC3 echo canceller (34-37 dB ERLE on a simulated speaker -> mic path); noise
    suppression and AGC off so the VAD sees the user's voice as it is."""

    name = "webrtc"

    def __init__(self, stream_delay_ms: int = 0):
        from pywebrtc_audio import EchoCanceller

        self._aec = EchoCanceller(sample_rate=FRAME_RATE, num_channels=1, stream_delay_ms=stream_delay_ms)

    def process(self, mic: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Echo-cancelled copy of ``mic`` (whole 10 ms blocks); ``reference`` is what played over the same span.
        The output lags the input by the canceller's internal block (~8 ms)."""
        usable = len(mic) - len(mic) % APM_BLOCK
        out = np.zeros_like(mic)
        if usable:
            out[:usable] = self._aec.process(np.ascontiguousarray(mic[:usable], dtype=np.int16),
                                             np.ascontiguousarray(reference[:usable], dtype=np.int16))
        return out


def create_echo_canceller(enabled: bool = True) -> WebRtcEchoCanceller | None:
    """The WebRTC canceller when enabled and installed, else None (callers duck instead)."""
    if not enabled:
        return None
    try:
        return WebRtcEchoCanceller()
    except ImportError:
        log.warning("echo cancellation unavailable (pip install 'edgeagent[aec]': pywebrtc-audio); ducking barge-in instead")
        return None
