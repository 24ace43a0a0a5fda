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
from edgeagent.ear.bargein import create_barge_in
from edgeagent.config import load_config
from edgeagent.tts.factory import create_synthesizer
from edgeagent.audio.playout import Speaker
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
# The agent's reply plays in real time while the mic hears its echo (x0.4, 40 ms late) and, at
# some moment, the user talking over it or a sound that is not speech.  Reported: onset -> duck
# (the reply yields), onset -> silent (it stopped for good), and for coughs, knocks and claps
# the stops (false: the reply was lost) and the resumes (ducked, then back to full level).

INTERRUPTIONS = [("espeak", "stop, wait a moment please"), ("piper", "Stop. What time is it?"),
                 ("hibari", "Wait, hold on a second."), ("espeak-gb", "No, that is not what I asked.")]


def _user_voice(name):
    from benchmarks.speech import espeak_wav, hibari_wav, piper_wav

    return {"espeak": espeak_wav, "piper": piper_wav, "hibari": hibari_wav,
            "espeak-gb": lambda t: espeak_wav(t, "en-gb")}[name]


def _mic_signal(voice, at_s: float, sound: np.ndarray):
    """(reply, mic, onset_s): the reply's echo plus ``sound`` at ``at_s``; the onset is its first
    20 ms at -40 dBFS or more."""
    reply = read_audio_from(voice, " ".join(THREE))
    mic = np.concatenate([np.zeros(640), reply.astype(np.float32) * 0.4])
    start = int(at_s * 16000)
    mic[start : start + len(sound)] += sound[: len(mic) - start].astype(np.float32)
    frames = sound[: len(sound) // 320 * 320].reshape(-1, 320).astype(np.float32)
    onset = start + 320 * int(np.argmax(np.sqrt((frames**2).mean(axis=1)) >= 300))
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


async def barge_in_once(voice, reply, mic, onset_s, min_speech_ms, aec: bool) -> dict:
    """The daemon's own detector (``create_barge_in``) over a speaker playing in real time, mic frames
    every 20 ms: an onset ducks, a clear un-ducks, a barge-in cancels.  Times in ms from the onset."""
    config = _config()
    config.agent.barge_in_min_speech_ms, config.agent.echo_cancel = min_speech_ms, aec
    sink = WavSink(TMP / "barge.wav", sample_rate=voice.sample_rate)
    speaker = Speaker(voice, sink, realtime=True)
    reference = EchoReference(16000)
    detector = create_barge_in(config, reference, create_wake_detector(config))
    seen: dict[type, float] = {}
    playing = asyncio.create_task(speaker.speak(_chunks(THREE), emit=lambda event: seen.setdefault(type(event), event.t)))
    while FirstAudio not in seen:
        await asyncio.sleep(0.001)
    detector.start()
    n = frame_samples(20)
    t0 = time.monotonic()
    out = {"duck": None, "stop": None, "resumed": 0}
    for i in range(0, len(mic) - n + 1, n):
        await asyncio.sleep(max(0.0, t0 + (i + n) / 16000 - time.monotonic()))  # a live mic's pace
        reference.played(reply[i : i + n] if i < len(reply) else np.zeros(n, np.int16))
        event = detector.process(Frame(mic[i : i + n], i // n, i / 16000, time.monotonic()))
        kind = type(event).__name__
        since_onset = 1000 * (time.monotonic() - (t0 + onset_s))
        if kind == "BargeInOnset":
            speaker.duck(True)  # the next frame out is quieter
            out["duck"] = out["duck"] if out["duck"] is not None else since_onset
        elif kind == "BargeInCleared":
            speaker.duck(False)
            out["resumed"] += 1
        elif kind == "BargeIn":
            speaker.cancel()  # fades out within this call: the speaker is silent from here
            out["stop"] = since_onset
            break
    await playing
    await sink.close()
    await speaker.close()
    return out


def bench_barge_in(voice, rounds=3):
    """Onset -> duck and onset -> silent over several voices and moments; a detection before the onset
    (echo) or none at all is counted, not timed."""
    signals = [_mic_signal(voice, 1.0 + 0.37 * k + 0.11 * j, read_audio(_user_voice(v)(text)).astype(np.float32) * 0.7)
               for j, (v, text) in enumerate(INTERRUPTIONS) for k in range(rounds)]
    for name, min_speech in [("aec", 150), ("aec", 200), ("aec", 300), ("ducking", 200)]:
        aec = name == "aec"
        if aec and create_echo_canceller(True) is None:
            print("barge-in with AEC: pywebrtc-audio not installed, skipped")
            continue
        results = [asyncio.run(barge_in_once(voice, *signal, min_speech, aec)) for signal in signals]
        stops = [r["stop"] for r in results]
        ducks = [r["duck"] for r in results if r["duck"] is not None and r["duck"] >= 0]
        label = f"({name}, min speech {min_speech} ms)"
        if ducks:
            report(f"barge-in onset -> duck {label}", ducks, 120)
        good = [v for v in stops if v is not None and v >= 0]
        if good:
            report(f"barge-in onset -> silent {label}", good, 300)
        print(f"{'barge-in ' + label:48s} missed {sum(v is None for v in stops)}, fired before the user spoke "
              f"{sum(v is not None and v < 0 for v in stops)} of {len(stops)}")


def bench_false_stops(voice, positions=3):
    """Coughs, knocks, claps, a throat-clearing "hm" over the reply: stops (false) and resumes."""
    from benchmarks.speech import room_noises

    signals = [(name, _mic_signal(voice, 1.0 + 0.53 * k, sound)) for name, sound in room_noises().items()
               for k in range(positions)]
    for name, aec in [("aec", True), ("ducking", False)]:
        config = _config()
        results = [(sound, asyncio.run(barge_in_once(voice, *signal, config.agent.barge_in_min_speech_ms, aec)))
                   for sound, signal in signals]
        stopped = sorted({sound for sound, r in results if r["stop"] is not None})
        print(f"room sounds over the reply ({name}, min speech {config.agent.barge_in_min_speech_ms} ms): "
              f"false stops {sum(r['stop'] is not None for _, r in results)} of {len(results)} {stopped}, "
              f"ducked {sum(r['duck'] is not None for _, r in results)}, resumed {sum(r['resumed'] > 0 for _, r in results)}")


def main():
    voices = [create_synthesizer(_config(engine)) for engine in ("hibari", "piper", "espeak")]
    for voice in voices:
        bench_first_audio(voice)
    for voice in voices:
        bench_rtf(voice)
    for voice in voices[:2]:
        bench_streaming_vs_whole(voice)
    bench_barge_in(voices[0])
    bench_false_stops(voices[0])


if __name__ == "__main__":
    main()
