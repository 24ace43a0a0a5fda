"""STT: word error rate per engine (clean / noisy, piper + espeak-ng voices), end of speech ->
final latency through the streaming wrapper (real-time frames, trailing silence), real-time factor.

End of speech (EoS) here is the moment the endpointer decides the turn is over: the last speech
frame plus ``vad.silence_ms`` of trailing silence have been fed in real time; the latency is from
then until ``Utterance.finish()`` returns.  Whisper decodes speculatively during that
silence, so its latency is usually just the hand-over.  An English vosk model is not packaged:
set EDGEAGENT_BENCH_VOSK_EN=/path/to/model to include its WER; the packaged Korean model is timed only.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.stats import percentile, word_errors
from edgeagent.audio.wav import read_audio
from edgeagent.config import load_config
from edgeagent.stt import create_recognizer
from edgeagent.stt.streaming import StreamingTranscriber
from benchmarks.speech import espeak_wav, piper_wav

RATE, FRAME = 16000, 320
SNR_DB = 10.0
REQUESTS = [
    "what is the weather like tomorrow",
    "turn on the kitchen lights",
    "set a timer for ten minutes",
    "play some jazz music in the living room",
    "what time is it in london",
    "add milk to my shopping list",
    "turn off the bedroom lights",
    "how tall is mount everest",
]
def add_noise(samples: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """Stationary pink-ish noise (leaky-integrated white) at ``snr_db`` below the speech level."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(len(samples)).astype(np.float32)
    pink = np.convolve(white, 0.97 ** np.arange(64), mode="same")  # low-pass tilt: more like room noise
    speech = samples.astype(np.float32)
    active = speech[np.abs(speech) > 0.05 * np.abs(speech).max()]
    speech_rms = np.sqrt(np.mean(active**2)) if len(active) else 1.0
    noise = pink / np.sqrt(np.mean(pink**2)) * speech_rms / (10 ** (snr_db / 20))
    return np.clip(speech + noise, -32768, 32767).astype(np.int16)


def test_set() -> list[tuple[str, str, np.ndarray]]:
    """(label, reference, 16 kHz samples with 0.2 s lead-in and 0.5 s trailing silence)."""
    items = []
    for index, text in enumerate(REQUESTS):
        for voice, path in (("piper", piper_wav(text)), ("espeak", espeak_wav(text))):
            audio = np.concatenate([np.zeros(RATE // 5, np.int16), read_audio(path), np.zeros(RATE // 2, np.int16)])
            items.append((f"{voice}/clean", text, audio))
            items.append((f"{voice}/noisy", text, add_noise(audio, SNR_DB, seed=index)))
    return items


def run_fast(recognizer, audio: np.ndarray) -> tuple[str, float]:
    started = time.perf_counter()
    recognizer.start()
    for i in range(0, len(audio), FRAME):
        recognizer.feed(audio[i : i + FRAME])
    text = recognizer.finish().text
    return text, time.perf_counter() - started


async def run_realtime(recognizer, audio: np.ndarray) -> float:
    """Feed 20 ms frames on the real-time clock; seconds from the last frame to the final."""
    transcriber = StreamingTranscriber(recognizer)
    utterance = transcriber.start()
    start = time.monotonic()
    for n, i in enumerate(range(0, len(audio), FRAME)):
        utterance.audio(audio[i : i + FRAME])
        delay = start + (n + 1) * FRAME / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    eos = time.monotonic()
    await utterance.finish()
    latency = time.monotonic() - eos
    await transcriber.close()
    return latency


def main() -> int:
    config = load_config(env={})
    items = test_set()
    engines = [("whisper", config), ("pocketsphinx", config)]
    vosk_en = os.environ.get("EDGEAGENT_BENCH_VOSK_EN")
    vosk_dir = vosk_en or str(Path(config.models_dir) / "stt" / "vosk-ko")
    if Path(vosk_dir).is_dir():
        vosk_config = load_config(env={})
        vosk_config.stt.vosk_model_dir = vosk_dir
        engines.append(("vosk", vosk_config))
    print(f"STT benchmark: {len(REQUESTS)} requests x (piper joe, espeak-ng en-us) x (clean, pink noise {SNR_DB:g} dB SNR)")
    print(f"{'engine':13} {'WER clean':>9} {'WER noisy':>9} {'piper':>6} {'espeak':>6} {'RTF':>5} "
          f"{'EoS->final P50':>14} {'P90':>6} {'load s':>6}")
    latency_items = [it for it in items if it[0].endswith("clean")][:6] + [it for it in items if it[0].endswith("noisy")][:4]
    for name, cfg in engines:
        t0 = time.perf_counter()
        recognizer = create_recognizer(cfg, name)
        load_s = time.perf_counter() - t0
        english = name != "vosk" or bool(vosk_en)
        subset = items if english else items[:2]
        errors: dict[str, list[int]] = {}
        busy = audio_s = 0.0
        for label, ref, audio in subset:
            hyp, seconds = run_fast(recognizer, audio)
            busy += seconds
            audio_s += len(audio) / RATE
            wrong, total = word_errors(ref, hyp)
            for key in (label.split("/")[1], label.split("/")[0]):
                e = errors.setdefault(key, [0, 0])
                e[0] += wrong
                e[1] += total
            if os.environ.get("BENCH_VERBOSE"):
                print(f"   {label:13} {ref!r} -> {hyp!r}")
        wer = {k: v[0] / v[1] for k, v in errors.items()} if english else {}
        latencies = [asyncio.run(run_realtime(recognizer, audio)) * 1000 for _, _, audio in latency_items[: len(latency_items) if english else 2]]
        fmt = lambda k: f"{wer[k]:9.1%}" if k in wer else f"{'n/a':>9}"  # noqa: E731
        print(f"{name:13} {fmt('clean')} {fmt('noisy')} {fmt('piper')[3:]} {fmt('espeak')[3:]} {busy / audio_s:5.2f} "
              f"{percentile(latencies, .5):11.0f} ms {percentile(latencies, .9):3.0f} ms {load_s:6.1f}")
        if name == "whisper":
            print(f"{'':13} speculative decode answered {recognizer.speculation_hits} of "
                  f"{len(subset) + len(latencies)} finals; decodes on the {cfg.stt.window_s:g} s window / "
                  f"30 s: {recognizer.decodes['window']} / {recognizer.decodes['30s']}")
        if not english:
            print(f"{'':13} (Korean model: English WER not meaningful; set EDGEAGENT_BENCH_VOSK_EN for an English one)")
        recognizer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
