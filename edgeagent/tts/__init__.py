"""Text-to-speech: sentence chunking, piper streaming synthesis, espeak-ng fallback, playback."""
