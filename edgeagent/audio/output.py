"""Open the audio output speech goes to: a WAV file, or the speaker at its own rate (the
Speaker resamples, so the device gets samples at the rate it runs at)."""

from __future__ import annotations

from edgeagent.audio.base import AudioOut
from edgeagent.config import Config


def open_audio_out(config: Config, path: str | None = None, file_rate: int = 22050) -> AudioOut:
    """A WavSink for ``path``, else a PyAudioSpeaker fed at the device rate."""
    if path:
        from edgeagent.audio.wav import WavSink

        return WavSink(path, sample_rate=file_rate)
    from edgeagent.audio.pyaudio_io import PyAudioSpeaker, find_device

    rate = config.audio.output_rate or find_device(config.audio.output_device, "output").default_rate
    return PyAudioSpeaker(config.audio.output_device, sample_rate=rate, input_rate=rate)
