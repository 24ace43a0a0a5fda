"""Microphone and speaker through PortAudio (pyaudio).

Both run PortAudio in callback mode so the event loop never blocks on the device: the mic
callback hands frames to the loop thread-safely, and the speaker callback pulls from a small
queue that ``clear()`` can empty at once (barge-in silences output within one buffer).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import os
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
    _quiet_native_audio_logs()
    return pyaudio


_ALSA_ERROR_HANDLER = None
_JACK_HANDLER = None


def _quiet_native_audio_logs() -> None:
    """PortAudio's device probe makes ALSA and JACK print dozens of lines to stderr on every
    start (unused PCMs, no JACK server); our own errors say what matters, so silence theirs."""
    global _ALSA_ERROR_HANDLER
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    if _ALSA_ERROR_HANDLER is not None:
        return
    try:
        asound = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
    except OSError:
        return
    handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
    _ALSA_ERROR_HANDLER = handler_type(lambda *args: None)  # kept referenced: ALSA holds the pointer
    asound.snd_lib_error_set_handler(_ALSA_ERROR_HANDLER)
    try:
        jack = ctypes.CDLL("libjack.so.0")
    except OSError:
        return
    global _JACK_HANDLER
    _JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)(lambda message: None)
    jack.jack_set_error_function(_JACK_HANDLER)
    jack.jack_set_info_function(_JACK_HANDLER)


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

    def __init__(self, device: str = "", frame_ms: int = 20, queue_frames: int = 200, stall_s: float = 2.0):
        self.frame_ms = frame_ms
        self.stall_s = stall_s  # no audio for this long means the device is gone (unplugged)
        self.device = find_device(device, "input")
        self._queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue(queue_frames)
        self._pa = None
        self._stream = None
        self.overruns = 0

    def open(self) -> None:
        """Open the device now (a daemon reports READY only once its microphone is open)."""
        if self._stream is not None:
            return
        loop = asyncio.get_running_loop()
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
        self.open()
        n = frame_samples(self.frame_ms)
        pending = np.zeros(0, dtype=np.int16)
        index = 0
        while True:
            try:
                chunk = await asyncio.wait_for(self._queue.get(), self.stall_s)
            except TimeoutError:
                raise AudioError(f"no audio from {self.device.name!r} for {self.stall_s:.0f} s") from None
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
        if self._queue.full():  # a consumer that stopped reading: make room for the end marker
            self._queue.get_nowait()
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
        self.on_first_play = None  # one-shot callback(t) when queued audio starts playing
        self._loop = None
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
            filled = drain_into(self._pending, out)
            self.played_samples += filled
            callback, loop = self.on_first_play, self._loop
            if filled and callback is not None and loop is not None:
                self.on_first_play = None
                loop.call_soon_threadsafe(callback, time.monotonic())
        return (out.tobytes(), _pyaudio().paContinue)

    @property
    def queued_samples(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._pending)

    async def write(self, pcm: np.ndarray) -> None:
        self._loop = asyncio.get_running_loop()
        block = self._resampler.process(np.asarray(pcm, dtype=np.int16))
        with self._lock:
            self._pending.append(block)
        # back-pressure: keep at most ~200 ms queued so a cancel has little to drop
        while self.queued_samples > self.sample_rate // 5:
            await asyncio.sleep(0.01)

    def clear(self) -> int:
        """Drop queued audio after a 5 ms fade (no click); returns how many samples were dropped."""
        fade_len = self.sample_rate * 5 // 1000
        with self._lock:
            queued = np.concatenate(list(self._pending)) if self._pending else np.zeros(0, np.int16)
            fade = (queued[:fade_len] * np.linspace(1.0, 0.0, min(fade_len, len(queued)))).astype(np.int16)
            self._pending.clear()
            self._pending.append(fade)
        return len(queued) - len(fade)

    async def close(self) -> None:
        self._stream.stop_stream()
        self._stream.close()
        self._pa.terminate()
