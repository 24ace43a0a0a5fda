"""Always-on cost of the listening stage (wake word + VAD + endpointer) and end-of-speech timing.

Prints CPU seconds per audio second (real-time factor) for each VAD engine, the process RSS, and
when the endpointer decides.  Wake-word accuracy is `make eval` (benchmarks/eval.py).
Usage: python -m benchmarks.bench_listen
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edgeagent.audio.frames import Frame
from edgeagent.audio.wav import read_audio, split_frames
from edgeagent.config import load_config
from edgeagent.ear.clean import create_cleaner
from edgeagent.ear.vad import create_endpointer, create_voice_activity
from edgeagent.ear.wake import create_wake_detector
from benchmarks.speech import espeak_wav, piper_wav

NEGATIVE_TEXT = ["What is the weather like today?", "Turn on the kitchen lights please.", "Okay, now I am busy.",
                 "Play some jazz music in the living room.", "How long will it take to drive to work?",
                 "My neighbour Jarvis said hello.", "Set a timer for ten minutes.", "Alex and Sasha went home."]
VOICES = [("piper", lambda t: piper_wav(t)), ("piper-slow", lambda t: piper_wav(t, 1.2)),
          ("espeak-us", lambda t: espeak_wav(t)), ("espeak-gb", lambda t: espeak_wav(t, "en-gb")),
          ("espeak-f", lambda t: espeak_wav(t, "en-us+f3", 140)), ("espeak-fast", lambda t: espeak_wav(t, "en-us", 200))]


def frames_of(audio: np.ndarray):
    return [Frame(f, i, i * 0.02, 0.0) for i, f in enumerate(split_frames(audio, 20))]


def always_on_rtf(config, audio: np.ndarray) -> float:
    """Wake word, STT's noise suppression + gain, and VAD on every frame (the VAD really runs only
    while listening or speaking: this is the worst case)."""
    wake = create_wake_detector(config)
    activity = create_voice_activity(config)
    cleaner = create_cleaner(config)
    frames = frames_of(audio)
    started = time.process_time()
    for frame in frames:
        wake.process(frame)
        activity.speech_probability(cleaner(frame))
    return (time.process_time() - started) / (len(audio) / 16000)


RSS_PROBE = """
import sys, numpy as np, psutil
sys.path.insert(0, sys.argv[1])
from edgeagent.config import load_config
from edgeagent.audio.frames import Frame
from edgeagent.ear.vad import create_endpointer, create_voice_activity
from edgeagent.ear.wake import create_wake_detector
from edgeagent.ear.clean import create_cleaner
config = load_config(None, env={}); config.vad.engine = sys.argv[2]
wake = create_wake_detector(config); endpointer = create_endpointer(config, create_voice_activity(config))
cleaner = create_cleaner(config)
silence = np.zeros(320, np.int16)
for i in range(500):
    frame = Frame(silence, i, i * 0.02, 0.0); wake.process(frame); endpointer.process(cleaner(frame))
print(psutil.Process().memory_info().rss / 2**20)
"""


def stage_rss_mib(engine: str) -> float:
    """RSS of a fresh process holding only the listening stage (what the always-on part costs)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(Path(__file__).resolve().parent.parent), engine],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def end_of_speech_errors_ms(config) -> list[float]:
    """Decision time minus (true end + silence_ms) on utterances with known boundaries."""
    errors = []
    for index, text in enumerate(NEGATIVE_TEXT):
        for _, make in VOICES[:3]:
            speech = read_audio(make(text))
            loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > 500)
            true_end = 0.5 + loud[-1] / 16000
            audio = np.concatenate([np.zeros(8000, np.int16), speech, np.zeros(16000 * 2, np.int16)])
            endpointer = create_endpointer(config, create_voice_activity(config))
            frames = frames_of(audio)
            endpointer.begin(frames[0])
            for frame in frames:
                if any(type(e).__name__ == "SpeechEnded" for e in endpointer.process(frame)):
                    errors.append((frame.audio_s + 0.02 - true_end) * 1000 - config.vad.silence_ms)
                    break
    return sorted(errors)


def main() -> int:
    config = load_config(None, env={})
    rng = np.random.default_rng(1234)
    negatives = np.concatenate([np.concatenate([read_audio(make(t)), np.zeros(8000, np.int16)])
                                for t in NEGATIVE_TEXT for _, make in VOICES]
                               + [(rng.normal(0, 1500, 16000 * 60)).astype(np.int16), np.zeros(16000 * 60, np.int16)])
    print(f"listening stage, 20 ms frames, {len(negatives) / 16000:.0f} s of negative audio")
    for engine in ("webrtc", "silero"):
        config.vad.engine = engine
        print(f"  always-on wake + noise suppression + VAD ({engine}): RTF {always_on_rtf(config, negatives):.4f} "
              f"(CPU s per audio s; target <= 0.02)")
        print(f"  RSS of a process with only wake + cleaner + VAD ({engine}) loaded: {stage_rss_mib(engine):.0f} MiB (target <= 120)")
    for engine in ("webrtc", "silero"):
        config.vad.engine = engine
        errors = end_of_speech_errors_ms(config)
        print(f"  end of speech decided (VAD {engine}): P50 {errors[len(errors) // 2]:+.0f} ms, "
              f"P90 {errors[round(0.9 * (len(errors) - 1))]:+.0f} ms after true end + silence_ms "
              f"(n={len(errors)}; target <= +60)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
