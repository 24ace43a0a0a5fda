"""espeak-ng fallback: tiny, instant (first audio ~15 ms), robotic.  Runs the binary with a fixed
argv and the text on stdin, never through a shell, and streams its WAV output as it is produced."""

from __future__ import annotations

import shutil
import subprocess
from typing import Iterator

import numpy as np

from edgeagent.config import TtsConfig
from edgeagent.tts.base import TtsError

ESPEAK_RATE = 22050
WAV_HEADER_BYTES = 44
READ_BYTES = 2 * 1024  # ~46 ms of audio per block
BASE_WPM = 175


class EspeakSynthesizer:
    name = "espeak"
    sample_rate = ESPEAK_RATE

    def __init__(self, voice: str = "en-us", length_scale: float = 1.0, volume: float = 1.0):
        self.binary = shutil.which("espeak-ng")
        if self.binary is None:
            raise TtsError("espeak-ng is not installed (apt install espeak-ng)")
        self.voice = voice
        self._tune(length_scale, volume)
        probe = subprocess.run(self.argv, input=b"", capture_output=True, timeout=10)
        if probe.returncode != 0:
            raise TtsError(f"espeak-ng voice {voice!r} unusable: {probe.stderr.decode(errors='replace').strip()}")

    def configure(self, tts: TtsConfig) -> None:
        self._tune(tts.length_scale, tts.volume)

    def _tune(self, length_scale: float, volume: float) -> None:
        self.argv = [self.binary, "-v", self.voice, "-s", str(round(BASE_WPM / length_scale)),
                     "-a", str(round(100 * volume)), "--stdout"]

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(text.encode("utf-8"))
            proc.stdin.close()
            header = proc.stdout.read(WAV_HEADER_BYTES)
            if len(header) < WAV_HEADER_BYTES:
                raise TtsError(f"espeak-ng produced no audio (exit {proc.wait()})")
            carry = b""
            while block := proc.stdout.read1(READ_BYTES):  # type: ignore[attr-defined]
                block = carry + block
                usable = len(block) - len(block) % 2
                carry = block[usable:]
                if usable:
                    yield np.frombuffer(block[:usable], dtype="<i2").astype(np.int16)
        finally:
            if proc.poll() is None:  # abandoned mid-stream (cancelled): do not leave it running
                proc.kill()
            proc.wait()
