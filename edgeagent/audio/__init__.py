"""Audio frames, conversion, buffering, and the sources and sinks that move them."""

from edgeagent.audio.frames import FRAME_RATE, Frame, frame_samples
from edgeagent.audio.base import AudioSink, AudioSource, AudioError

__all__ = ["FRAME_RATE", "Frame", "frame_samples", "AudioSink", "AudioSource", "AudioError"]
