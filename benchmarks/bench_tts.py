"""TTS and barge-in figures: text -> first audio frame, real-time factor, streaming vs whole
utterance, and barge-in latency (user speech onset in the mic -> speaker silent).

``python -m benchmarks.bench_tts`` (``make bench-stages``); about a minute on a 2-core x86 machine.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeagent.audio.echo import EchoReference, create_echo_canceller
from edgeagent.audio.frames import Frame, frame_samples
from edgeagent.audio.wav import WavSink, read_audio
from edgeagent.ear.bargein import BargeInDetector
from edgeagent.config import load_config
from edgeagent.tts.factory import create_synthesizer
from edgeagent.audio.playout import Speaker
from edgeagent.ear.vad import create_voice_activity
from edgeagent.ear.wake import create_wake_detector
from edgeagent.events import ChunkQueued, FirstAudio
from benchmarks.stats import percentile

FIRST_SENTENCES = ["Sure.", "Okay, here it is.", "It is sunny today.", "The timer is set.", "Good morning!"]
THREE = ["The weather today is sunny and warm.", "Tomorrow brings some light rain in the afternoon.",
         "Take an umbrella if you go out in the evening."]
TMP = Path(tempfile.mkdtemp(prefix="bench_tts_"))


def report(name, values_ms, target=None):
    extra = f"  (target P90 <= {target} ms)" if target else ""
    print(f"{name:48s} P50 {percentile(values_ms, .5):7.1f} ms  P90 {percentile(values_ms, .9):7.1f} ms  "
          f"n={len(values_ms)}{extra}")


async def _chunks(texts):
    for text in texts:
        yield text


async def first_audio_ms(voice, texts) -> float:
    """Real-time playback; stop as soon as the first frame went out."""
    sink = WavSink(TMP / "first.wav", sample_rate=voice.sample_rate)
    speaker = Speaker(voice, sink, realtime=True)
    seen: dict[type, float] = {}
    task = asyncio.create_task(speaker.speak(_chunks(texts), emit=lambda event: seen.setdefault(type(event), event.t)))
    while FirstAudio not in seen and not task.done():
        await asyncio.sleep(0.001)
    speaker.cancel()
    await task
    await sink.close()
    await speaker.close()
    return 1000 * (seen[FirstAudio] - seen[ChunkQueued])


def bench_first_audio(voice, rounds=4):
    values = [asyncio.run(first_audio_ms(voice, [s])) for _ in range(rounds) for s in FIRST_SENTENCES]
    report(f"{voice.name}: text -> first audio frame (short sentence)", values, 150)


def bench_rtf(voice):
    text = " ".join(THREE)
    start = time.monotonic()
    samples = sum(len(b) for b in voice.synthesize(text))
    took = time.monotonic() - start
    print(f"{voice.name}: real-time factor {took / (samples / voice.sample_rate):.3f} "
          f"({took:.2f} s for {samples / voice.sample_rate:.2f} s of speech)")


def bench_streaming_vs_whole(voice, rounds=3):
    whole, streamed = [], []
    for _ in range(rounds):
        start = time.monotonic()
        for sentence in THREE:  # the non-streaming way: synthesize the whole reply, then play
            list(voice.synthesize(sentence))
        whole.append(1000 * (time.monotonic() - start))
        streamed.append(asyncio.run(first_audio_ms(voice, THREE)))
    report(f"{voice.name}: 3-sentence reply, whole-utterance first audio", whole)
    report(f"{voice.name}: 3-sentence reply, streaming first audio", streamed)


# ---------------------------------------------------------------- barge-in

def _mic_signal(voice, user_at_s: float):
    """The agent's reply as echo (x0.4, 40 ms late) plus the user saying something at ``user_at_s``."""
    reply = read_audio_from(voice, " ".join(THREE))
    espeak = create_synthesizer(_config("espeak"))
    user = read_audio_from(espeak, "stop, wait a moment please").astype(np.float32) * 0.7
    mic = np.concatenate([np.zeros(640), reply.astype(np.float32) * 0.4])
    start = int(user_at_s * 16000)
    mic[start : start + len(user)] += user[: len(mic) - start]
    frames = user[: len(user) // 320 * 320].reshape(-1, 320)
    loud = np.sqrt((frames**2).mean(axis=1)) >= 300  # speech onset: the first 20 ms at -40 dBFS or more
    onset = start + 320 * int(np.argmax(loud))
    return reply, np.clip(mic, -32768, 32767).astype(np.int16), onset / 16000


def read_audio_from(voice, text):
    path = TMP / f"{voice.name}_{abs(hash(text))}.wav"
    sink = WavSink(path, sample_rate=16000, input_rate=voice.sample_rate)
    sink.write_now(np.concatenate(list(voice.synthesize(text))))
    asyncio.run(sink.close())
    return read_audio(path)


def _config(engine="piper"):
    config = load_config(env={})
    config.tts.engine = engine
    return config


async def barge_in_once(voice, reply, mic, onset_s, min_speech_ms, canceller) -> float:
    """Speaker playing in real time; mic frames arrive every 20 ms; BargeIn -> speaker.cancel()."""
    config = _config()
    sink = WavSink(TMP / "barge.wav", sample_rate=voice.sample_rate)
    speaker = Speaker(voice, sink, realtime=True)
    reference = EchoReference(16000)
    detector = BargeInDetector(reference, create_wake_detector(config), vad=create_voice_activity(config),
                               canceller=canceller, min_speech_ms=min_speech_ms)
    seen: dict[type, float] = {}
    playing = asyncio.create_task(speaker.speak(_chunks(THREE), emit=lambda event: seen.setdefault(type(event), event.t)))
    while FirstAudio not in seen:
        await asyncio.sleep(0.001)
    detector.start()
    n = frame_samples(20)
    t0 = time.monotonic()
    for i in range(0, len(mic) - n + 1, n):
        await asyncio.sleep(max(0.0, t0 + (i + n) / 16000 - time.monotonic()))  # a live mic's pace
        reference.played(reply[i : i + n] if i < len(reply) else np.zeros(n, np.int16))
        if detector.process(Frame(mic[i : i + n], i // n, i / 16000, time.monotonic())):
            speaker.cancel()  # fades out within this call: the speaker is silent from here
            silent_t = time.monotonic()
            break
    else:
        silent_t = None
    await playing
    await sink.close()
    await speaker.close()
    if silent_t is None:
        return float("nan")
    return 1000 * (silent_t - (t0 + onset_s))


def bench_barge_in(voice, rounds=5):
    """Onset -> silent; a detection before the onset (echo) or none at all is counted, not timed."""
    signals = [_mic_signal(voice, 1.0 + 0.37 * k) for k in range(rounds)]
    for name, min_speech in [("aec", 60), ("aec", 100), ("aec", 300), ("ducking", 300)]:
        if name == "aec" and create_echo_canceller(True) is None:
            print("barge-in with AEC: pywebrtc-audio not installed, skipped")
            continue
        values = [asyncio.run(barge_in_once(voice, reply, mic, onset_s, min_speech,
                                            create_echo_canceller(True) if name == "aec" else None))
                  for reply, mic, onset_s in signals]
        good = [v for v in values if v == v and v >= 0]
        label = f"barge-in onset -> silent ({name}, min speech {min_speech} ms)"
        if good:
            report(label, good, 120)
        print(f"{label:48s} missed {sum(v != v for v in values)}, fired before the user spoke "
              f"{sum(v < 0 for v in values)} of {len(values)}")


def main():
    voices = [create_synthesizer(_config(engine)) for engine in ("hibari", "piper", "espeak")]
    for voice in voices:
        bench_first_audio(voice)
    for voice in voices:
        bench_rtf(voice)
    for voice in voices[:2]:
        bench_streaming_vs_whole(voice)
    bench_barge_in(voices[0])


if __name__ == "__main__":
    main()
