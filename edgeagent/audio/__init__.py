"""Audio frames, conversion, buffering, and the sources and sinks that move them."""

from edgeagent.audio.frames import FRAME_RATE, Frame, frame_samples
from edgeagent.audio.base import AudioOut, AudioSource, AudioError

__all__ = ["FRAME_RATE", "Frame", "frame_samples", "AudioOut", "AudioSource", "AudioError"]
