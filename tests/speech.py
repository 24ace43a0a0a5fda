"""Speech fixtures for the tests: see edgeagent.synthetic_speech."""

from edgeagent.synthetic_speech import concat_wav, espeak_wav, piper_wav, voiced_seconds

__all__ = ["concat_wav", "espeak_wav", "piper_wav", "voiced_seconds"]
