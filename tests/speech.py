"""Speech fixtures for the tests: see benchmarks.speech."""

from benchmarks.speech import concat_wav, espeak_wav, hibari_wav, piper_wav, room_noises, voiced_seconds

__all__ = ["concat_wav", "espeak_wav", "hibari_wav", "piper_wav", "room_noises", "voiced_seconds"]
