"""Microphone and speaker through PortAudio (pyaudio).

Both run PortAudio in callback mode so the event loop never blocks on the device: the mic
callback hands frames to the loop thread-safely, and the speaker callback pulls from a small
queue that ``clear()`` can empty at once (barge-in silences output within one buffer).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterator

import numpy as np

from edgeagent.audio.base import AudioError
from edgeagent.audio.convert import StreamResampler
from edgeagent.audio.fifo import drain_into
from edgeagent.audio.frames import FRAME_RATE, Frame, frame_samples


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int


def _pyaudio():
    try:
        import pyaudio
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AudioError("pyaudio is not installed: `make install` (needs apt portaudio19-dev)") from exc
    return pyaudio


def list_devices() -> list[DeviceInfo]:
    pa = _pyaudio().PyAudio()
    try:
        return [
            DeviceInfo(
                index=i,
                name=str(info["name"]),
                max_input_channels=int(info["maxInputChannels"]),
                max_output_channels=int(info["maxOutputChannels"]),
                default_rate=int(info["defaultSampleRate"]),
            )
            for i in range(pa.get_device_count())
            for info in [pa.get_device_info_by_index(i)]
        ]
    finally:
        pa.terminate()


def find_device(spec: str, direction: str) -> DeviceInfo:
    """Resolve a device by index or by a case-insensitive name substring; "" is the default device."""
    devices = list_devices()
    key = "max_input_channels" if direction == "input" else "max_output_channels"
    usable = [d for d in devices if getattr(d, key) > 0]
    if not usable:
        raise AudioError(f"no audio {direction} device found (PortAudio sees {len(devices)} devices in all)")
    if spec == "":
        pa = _pyaudio().PyAudio()
        try:
            getter = pa.get_default_input_device_info if direction == "input" else pa.get_default_output_device_info
            index = int(getter()["index"])
        except OSError:
            index = usable[0].index
        finally:
            pa.terminate()
        return next((d for d in usable if d.index == index), usable[0])
    if spec.isdigit():
        match = [d for d in usable if d.index == int(spec)]
    else:
        match = [d for d in usable if spec.lower() in d.name.lower()]
    if not match:
        names = ", ".join(f"{d.index}: {d.name}" for d in usable)
        raise AudioError(f"no {direction} device matches {spec!r}; available: {names}")
    return match[0]


class PyAudioMicrophone:
    """Live frames from an input device, resampled to 16 kHz if the device cannot do it."""

    def __init__(self, device: str = "", frame_ms: int = 20, queue_frames: int = 200):
        self.frame_ms = frame_ms
        self.device = find_device(device, "input")
        self._queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue(queue_frames)
        self._pa = None
        self._stream = None
        self.overruns = 0

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        pyaudio = _pyaudio()
        self._pa = pyaudio.PyAudio()
        rate = FRAME_RATE
        try:
            self._pa.is_format_supported(rate, input_device=self.device.index, input_channels=1, input_format=pyaudio.paInt16)
        except ValueError:
            rate = self.device.default_rate
        resampler = StreamResampler(rate, FRAME_RATE)

        def callback(data, _count, _info, _status):
            chunk = resampler.process(np.frombuffer(data, dtype=np.int16))
            loop.call_soon_threadsafe(self._put, chunk)
            return (None, pyaudio.paContinue)

        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=rate,
                input=True,
                input_device_index=self.device.index,
                frames_per_buffer=frame_samples(self.frame_ms, rate),
                stream_callback=callback,
            )
        except OSError as exc:
            raise AudioError(f"cannot open input device {self.device.name!r}: {exc}") from exc

    def _put(self, chunk: np.ndarray) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # keep the newest audio: a stalled consumer must not grow memory
            self.overruns += 1
        self._queue.put_nowait(chunk)

    async def frames(self) -> AsyncIterator[Frame]:
        self._open(asyncio.get_running_loop())
        n = frame_samples(self.frame_ms)
        pending = np.zeros(0, dtype=np.int16)
        index = 0
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                return
            pending = np.concatenate([pending, chunk])
            while len(pending) >= n:
                yield Frame(samples=pending[:n], index=index, audio_s=index * self.frame_ms / 1000, t=time.monotonic())
                pending = pending[n:]
                index += 1

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
            self._stream = None
        if self._pa is not None:
            self._pa.terminate()
            self._pa = None
        self._queue.put_nowait(None)


class PyAudioSpeaker:
    """Output device fed from a bounded queue; ``clear()`` drops everything not yet played."""

    def __init__(self, device: str = "", sample_rate: int = 0, input_rate: int = 22050, buffer_ms: int = 20):
        pyaudio = _pyaudio()
        self.device = find_device(device, "output")
        self.sample_rate = sample_rate or self.device.default_rate
        self.input_rate = input_rate
        self._resampler = StreamResampler(input_rate, self.sample_rate)
        self._pending: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        self._buffer = frame_samples(buffer_ms, self.sample_rate)
        self.played_samples = 0  # at the device rate
        self._pa = pyaudio.PyAudio()
        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=self.sample_rate,
                output=True,
                output_device_index=self.device.index,
                frames_per_buffer=self._buffer,
                stream_callback=self._callback,
            )
        except OSError as exc:
            self._pa.terminate()
            raise AudioError(f"cannot open output device {self.device.name!r}: {exc}") from exc

    def _callback(self, _in, count, _info, _status):
        out = np.zeros(count, dtype=np.int16)
        with self._lock:
            self.played_samples += drain_into(self._pending, out)
        return (out.tobytes(), _pyaudio().paContinue)

    @property
    def queued_samples(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._pending)

    async def write(self, pcm: np.ndarray) -> None:
        block = self._resampler.process(np.asarray(pcm, dtype=np.int16))
        with self._lock:
            self._pending.append(block)
        # back-pressure: keep at most ~200 ms queued so a cancel has little to drop
        while self.queued_samples > self.sample_rate // 5:
            await asyncio.sleep(0.01)

    def clear(self) -> int:
        """Drop queued audio now; returns how many samples were dropped."""
        with self._lock:
            dropped = sum(len(b) for b in self._pending)
            self._pending.clear()
        return dropped

    async def close(self) -> None:
        self._stream.stop_stream()
        self._stream.close()
        self._pa.terminate()
