"""espeak-ng: robotic but tiny and instant (~15 ms to first audio); the fallback voice."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Iterator

import numpy as np
import soundfile

from edgeagent.tts.base import TtsError


class EspeakSynthesizer:
    name = "espeak"
    sample_rate = 22050

    def __init__(self, voice: str = "en-us", length_scale: float = 1.0, volume: float = 1.0):
        self.binary = shutil.which("espeak-ng")
        if not self.binary:
            raise TtsError("espeak-ng is not installed (apt install espeak-ng)")
        self.voice = voice
        self.words_per_minute = str(int(175 / length_scale))
        self.amplitude = str(int(min(200, 100 * volume)))

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        # a fixed argv with the text on stdin: nothing in the text can become a shell command or an option
        result = subprocess.run(
            [self.binary, "--stdout", "-v", self.voice, "-s", self.words_per_minute, "-a", self.amplitude],
            input=text.encode(), capture_output=True, timeout=30,
        )
        if result.returncode != 0:
            raise TtsError(f"espeak-ng failed: {result.stderr.decode(errors='replace').strip()}")
        audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="int16")
        self.sample_rate = rate
        yield audio
