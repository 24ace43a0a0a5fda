"""``make bench`` (``python -m benchmarks``): one seeded workload through the real daemon, and the baselines beside it.

Latency of every stage (P50/P90/max), always-on and talking CPU and RSS, wake-word FRR and
false accepts per hour, STT WER — and, in the same run on the same machine, the same models
wired naively (wait for the whole transcript, the whole reply, then synthesize it), piper the
usual way (whole utterance) and openWakeWord's own runtime.  Writes results.json, report.md and
PNG plots; ``--compare old.json`` prints the deltas.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import psutil

from benchmarks.stats import percentiles, word_errors
from edgeagent.audio.frames import Frame
from edgeagent.audio.timeline import ClockedSink
from edgeagent.audio.wav import WavSource, read_audio, split_frames
from edgeagent.config import Config
from edgeagent.llm.conversation import Conversation
from edgeagent.ear.vad import create_voice_activity
from edgeagent.ear.wake import create_wake_detector
from edgeagent.runtime.stages import Engines, load_engines, wire

SHORT = ["What is the capital of France?", "What color is the sky?", "What is two plus two?",
         "How many days are in a week?", "What do bees make?", "Which planet is the red planet?"]
LONG = ["Can you tell me a fun fact about cats and why they like to sleep so much?",
        "What is the difference between weather and climate, in simple words?",
        "If I leave home at eight and the drive takes forty minutes, when do I arrive?",
        "Could you suggest a quick dinner I can cook with eggs, rice and spinach?"]
INTERRUPTION = "Stop. What time is it?"
STAGES = ["end_of_turn_ms", "end_of_speech_to_final_ms", "reply_start_ms", "llm_ttft_ms", "chunk_wait_ms",
          "tts_first_chunk_ms", "ttfa_ms", "ttfa_audio_ms", "barge_in_stop_ms"]
REPLY_LENGTHS = [("short (<= 25 tokens)", 0, 25), ("medium (26-60)", 26, 60), ("long (> 60)", 61, 10_000)]


@dataclass(frozen=True)
class TurnSpec:
    question: str
    voice: str
    noise_snr_db: float | None
    barge_in: bool


def voices() -> dict[str, Callable[[str], Path]]:
    from benchmarks.speech import espeak_wav, piper_wav

    return {"piper": piper_wav, "piper-slow": lambda t: piper_wav(t, 1.15), "espeak-us": espeak_wav,
            "espeak-gb": lambda t: espeak_wav(t, "en-gb"), "espeak-f": lambda t: espeak_wav(t, "en-us+f3", 150)}


def make_workload(turns: int, seed: int = 7) -> list[TurnSpec]:
    """Fixed for a seed: short and long questions, several voices, every 4th noisy, every 5th interrupted."""
    rng = random.Random(seed)
    names = list(voices())
    return [TurnSpec(question=rng.choice(LONG if i % 3 == 2 else SHORT), voice=names[i % len(names)],
                     noise_snr_db=15.0 if i % 4 == 3 else None, barge_in=i % 5 == 4) for i in range(turns)]


def render(spec: TurnSpec, path: Path, seed: int) -> float:
    """The user's side of one turn as a 16 kHz WAV at ``path``; returns where the question really ends
    (its last 20 ms louder than -40 dBFS, before any noise), in seconds."""
    import soundfile

    from benchmarks.speech import piper_wav

    make = voices()[spec.voice]
    question = read_audio(make(spec.question))
    parts = [np.zeros(6400, np.int16), read_audio(piper_wav("Alexa.")), np.zeros(4800, np.int16), question]
    frames = question[: len(question) // 320 * 320].reshape(-1, 320).astype(np.float32)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
    question_end = (sum(len(p) for p in parts[:-1]) + 320 * (int(loud[-1]) + 1 if len(loud) else len(frames))) / 16000
    parts.append(np.zeros(16000 * (4 if spec.barge_in else 1), np.int16))
    if spec.barge_in:  # talks over the reply once it has started
        parts += [read_audio(make(INTERRUPTION)), np.zeros(16000, np.int16)]
    audio = np.concatenate(parts).astype(np.float32)
    if spec.noise_snr_db is not None:
        speech_rms = np.sqrt(np.mean(np.square(audio[audio != 0]))) if audio.any() else 1.0
        noise = np.random.default_rng(seed).normal(0, speech_rms / 10 ** (spec.noise_snr_db / 20), len(audio))
        audio = audio + noise
    soundfile.write(str(path), np.clip(audio, -32768, 32767).astype(np.int16), 16000, subtype="PCM_16")
    return question_end


def first_voice_after(wav: Path, after_s: float) -> float | None:
    """Seconds into ``wav`` (the agent's voice, aligned with the user's input) of its first voiced
    20 ms after ``after_s``."""
    audio = read_audio(wav)[int(after_s * 16000):]
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320).astype(np.float32)
    voiced = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
    return after_s + voiced[0] * 0.02 if len(voiced) else None


class CpuSampler:
    """This process's CPU % (of one core) and RSS every ``interval_s``, on a background thread, with
    its child processes (the embedded LLM runs in one) counted in."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, float, float]] = []  # (t, cpu %, rss MiB, of it the children's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def __enter__(self) -> CpuSampler:
        self._process.cpu_percent(None)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        children: dict[int, psutil.Process] = {}
        while not self._stop.wait(self.interval_s):
            cpu, rss, theirs = self._process.cpu_percent(None), self._process.memory_info().rss, 0
            for child in self._process.children(recursive=True):
                child = children.setdefault(child.pid, child)
                try:
                    cpu, theirs = cpu + child.cpu_percent(None), theirs + child.memory_info().rss
                except psutil.NoSuchProcess:
                    children.pop(child.pid, None)
            self.samples.append((time.monotonic(), cpu, (rss + theirs) / 2**20, theirs / 2**20))

    def between(self, start: float, end: float) -> list[tuple[float, float, float, float]]:
        return [s for s in self.samples if start <= s[0] <= end]

    def cpu_seconds(self) -> float:
        """CPU time used so far by this process and its children (the LLM's process)."""
        total = sum(self._process.cpu_times()[:2])
        for child in self._process.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                pass
        return total



# ------------------------------------------------------------------ the streaming daemon


async def run_turns(config: Config, engines: Engines, specs: list[TurnSpec], workdir: Path, sampler: CpuSampler,
                    progress: Callable[[], None]) -> tuple[list[dict], float]:
    traces: list[dict] = []
    talking_s = 0.0
    for index, spec in enumerate(specs):
        user = workdir / f"turn{index}.wav"
        question_end = render(spec, user, seed=index)
        audio_out = ClockedSink(workdir / f"reply{index}.wav", config.audio.frame_ms)
        stages = wire(config, engines, audio_out, [])  # a fresh conversation per turn
        started, cpu_before = time.monotonic(), sampler.cpu_seconds()
        await stages.controller.run(WavSource(user, config.audio.frame_ms, realtime=True).frames())
        talking_s += time.monotonic() - started
        cpu_s = sampler.cpu_seconds() - cpu_before
        await stages.close()
        await audio_out.close()
        first_voice = first_voice_after(workdir / f"reply{index}.wav", question_end)
        for number, trace in enumerate(stages.controller.finished):
            data = trace.to_dict(include_text=True)
            # the user's experience: the agent's first voiced sound after the question's last one, both
            # read from the audio (the trace's ttfa_ms counts from where the VAD heard speech end; in
            # noise it hears the noise as voice for a while, and that understates TTFA)
            ttfa_audio = round(1000 * (first_voice - question_end), 1) \
                if number == 0 and first_voice is not None and trace.outcome in ("answered", "barged_in") else None
            data.update(turn=index, question=spec.question if number == 0 else INTERRUPTION, voice=spec.voice,
                        noisy=spec.noise_snr_db is not None, interrupted=spec.barge_in,
                        cpu_s=round(cpu_s, 3) if number == 0 else None, ttfa_audio_ms=ttfa_audio)
            traces.append(data)
        progress()
    return traces, talking_s


async def run_idle(config: Config, engines: Engines, seconds: float) -> None:
    """The always-on state: silence through the same loop (wake + VAD only), in real time."""
    audio_out = ClockedSink("/dev/null", config.audio.frame_ms)
    stages = wire(config, engines, audio_out, [])
    silence = np.zeros(config.audio.frame_ms * 16, np.int16)

    async def frames():
        step = config.audio.frame_ms / 1000
        start = time.monotonic()
        for i in range(int(seconds / step)):
            await asyncio.sleep(max(0.0, start + (i + 1) * step - time.monotonic()))
            yield Frame(silence, i, i * step, time.monotonic())

    await stages.controller.run(frames())
    await stages.close()
    await audio_out.close()


# ------------------------------------------------------------------ baselines


def naive_ttfa_ms(config: Config, engines: Engines, specs: list[TurnSpec], workdir: Path) -> list[tuple[float, int]]:
    """Same models, no streaming: whole transcript, whole reply, whole synthesis, then audio.
    (TTFA, reply tokens) per turn."""
    results = []
    local = engines.router.local
    recognizer = engines.recognizer
    for index, spec in enumerate(specs):
        if spec.barge_in:
            continue
        question = read_audio(voices()[spec.voice](spec.question))
        started = time.monotonic()
        recognizer.start()
        recognizer.feed(question)
        text = recognizer.finish().text
        tokens = asyncio.run(_collect(local.stream(Conversation(config.llm.system_prompt).messages_for(text))))
        for _ in engines.synthesizer.synthesize("".join(tokens) or "Okay."):
            pass
        results.append((config.vad.silence_ms + (time.monotonic() - started) * 1000, len(tokens)))
    return results


async def _collect(stream) -> list[str]:
    return [token async for token in stream]


def ratio_by_reply_length(answered: list[dict], naive: list[tuple[float, int]]) -> dict[str, dict]:
    """P50 TTFA streaming / naive per reply length (each side bucketed by its own reply's tokens)."""
    out = {}
    for name, lo, hi in REPLY_LENGTHS:
        streaming = percentiles([t["ttfa_audio_ms"] for t in answered if lo <= (t.get("llm_tokens") or 0) <= hi])
        whole = percentiles([ms for ms, tokens in naive if lo <= tokens <= hi])
        out[name] = {"streaming_p50": streaming and streaming["p50"], "naive_p50": whole and whole["p50"],
                     "ratio_p50": streaming["p50"] / whole["p50"] if streaming and whole else None,
                     "n": (streaming or {}).get("n", 0), "naive_n": (whole or {}).get("n", 0)}
    return out


def speculation_cost(config: Config, engines: Engines, specs: list[TurnSpec], workdir: Path, sampler: CpuSampler,
                     traces: list[dict]) -> dict:
    """The CPU the speculative reply costs: the same first turns again with it off, CPU seconds per turn."""
    import dataclasses

    if not hasattr(config.agent, "speculative_reply"):  # a run of code from before speculative replies
        return {}
    off = dataclasses.replace(config, agent=dataclasses.replace(config.agent, speculative_reply=False))
    without, _ = asyncio.run(run_turns(off, engines, specs, workdir, sampler, lambda: None))
    first = lambda ts: {t["turn"]: t["cpu_s"] for t in ts if t.get("cpu_s") is not None}  # noqa: E731
    on, off_cpu = first(traces), first(without)
    turns = sorted(set(on) & set(off_cpu))
    if not turns:
        return {}
    mean_on = statistics.fmean(on[t] for t in turns)
    mean_off = statistics.fmean(off_cpu[t] for t in turns)
    return {"turns": len(turns), "cpu_s_per_turn_on": round(mean_on, 2), "cpu_s_per_turn_off": round(mean_off, 2),
            "extra_percent": round(100 * (mean_on - mean_off) / mean_off, 1) if mean_off else None,
            "discarded_per_turn": round(statistics.fmean(t.get("speculations_discarded", 0) for t in traces), 2),
            "ttfa_off": percentiles([t["ttfa_audio_ms"] for t in without if t["outcome"] == "answered"])}


def model_memory(config: Config) -> dict[str, float]:
    """RSS each model adds (MiB), loaded one after another in a fresh process in the daemon's order
    (a library loaded by an earlier one, e.g. onnxruntime, counts there), and the LLM's own process."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "benchmarks.memory"], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parent.parent)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": out.stderr[-500:]}


def piper_first_audio_ms(engines: Engines, reps: int = 5) -> dict[str, float]:
    """Three-sentence reply: the configured voice's whole utterance vs our first streamed sentence."""
    text = ("The weather today is mostly sunny with a light breeze. Tomorrow will be cloudy, with a chance of "
            "rain in the evening. Take an umbrella if you go out late.")
    synth = engines.synthesizer
    whole, first = [], []
    for _ in range(reps):
        started = time.monotonic()
        for _ in synth.synthesize(text):  # the usual way: the whole utterance, then play
            pass
        whole.append((time.monotonic() - started) * 1000)
        started = time.monotonic()
        next(iter(synth.synthesize("The weather today is mostly sunny with a light breeze.")))
        first.append((time.monotonic() - started) * 1000)
    return {"piper_whole_ms": statistics.median(whole), "streaming_first_ms": statistics.median(first),
            "ratio": statistics.median(first) / statistics.median(whole)}


def wake_accuracy_and_cost(config: Config) -> dict:
    """Our wake + VAD vs openWakeWord's own runtime on the same audio: detections and CPU."""
    from benchmarks.speech import espeak_wav, piper_wav

    from benchmarks.eval_text import WAKE_PHRASES

    word = config.wake.models[0]
    phrase = WAKE_PHRASES[word]
    positives = [piper_wav(phrase + "."), piper_wav(phrase + ".", 1.2), espeak_wav(phrase),
                 espeak_wav(phrase, "en-gb"), espeak_wav(phrase, "en-us+f3", 140), espeak_wav(phrase, "en-us", 200)]
    negative_text = ["What is the weather like today?", "Turn on the kitchen lights please.", "Okay, now I am busy.",
                     "Play some jazz in the living room.", "Set a timer for ten minutes."]
    rng = np.random.default_rng(11)
    negatives = np.concatenate([read_audio(make(t)) for t in negative_text for make in (piper_wav, espeak_wav)]
                               + [rng.normal(0, 1500, 16000 * 60).astype(np.int16), np.zeros(16000 * 120, np.int16)])
    pad = np.zeros(8000, np.int16)
    clips = [np.concatenate([pad, read_audio(p), pad]) for p in positives]

    def ours(audio: np.ndarray) -> tuple[int, float]:
        wake, vad = create_wake_detector(config), create_voice_activity(config)
        started, fired = time.process_time(), 0
        for i, samples in enumerate(split_frames(audio, 20)):
            frame = Frame(samples, i, i * 0.02, 0.0)
            fired += len(wake.process(frame))
            vad.speech_probability(frame)
        return fired, time.process_time() - started

    def openwakeword(audio: np.ndarray) -> tuple[int, float]:
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        oww, features = OpenWakeWord.from_builtin(Model(word)), OpenWakeWordFeatures.from_builtin()
        started, fired, above = time.process_time(), 0, False
        pcm = audio.astype("<i2").tobytes()
        for offset in range(0, len(pcm), 2560):  # streamed in 80 ms chunks, as its runtime expects
            for feature in features.process_streaming(pcm[offset : offset + 2560]):
                for probability in oww.process_streaming(feature):
                    if probability > 0.5 and not above:
                        fired += 1
                    above = probability > 0.5
        return fired, time.process_time() - started

    out = {}
    hours = len(negatives) / 16000 / 3600
    for name, run in (("edgeagent", ours), ("openwakeword", openwakeword)):
        detected = sum(run(clip)[0] > 0 for clip in clips)
        false, cpu_s = run(negatives)
        out[name] = {"frr": 1 - detected / len(clips), "false_accepts_per_hour": false / hours,
                     "cpu_rtf": cpu_s / (len(negatives) / 16000)}
    out["cpu_ratio"] = out["edgeagent"]["cpu_rtf"] / out["openwakeword"]["cpu_rtf"]
    return out


# ------------------------------------------------------------------ the whole run


def run_benchmark(config: Config, turns: int, outdir: Path, seed: int = 7, show_progress: bool = True,
                  before: dict | None = None, cutoff_cases: int = 16, speculation_turns: int = 6) -> dict:
    """The whole run.  ``before``: an earlier results.json, drawn beside this run's where each turn's time
    goes."""
    import tempfile

    from tqdm import tqdm

    from benchmarks.bench_turn import cutoff_items, run_cutoffs
    from benchmarks.turn_set import build
    from edgeagent.runtime.daemon import without_acoustic_echo

    config = without_acoustic_echo(config)
    outdir.mkdir(parents=True, exist_ok=True)
    specs = make_workload(turns, seed)
    steps = turns + cutoff_cases + 5
    bar = tqdm(total=steps, desc="edgeagent bench", unit="step", disable=not show_progress)
    memory = model_memory(config)  # before anything else runs: the machine is otherwise quiet
    engines = load_engines(config)
    bar.update()
    with tempfile.TemporaryDirectory() as tmp, CpuSampler() as sampler:
        idle_start = time.monotonic()
        asyncio.run(run_idle(config, engines, 15.0))
        idle_end = time.monotonic()
        bar.update()
        traces, _ = asyncio.run(run_turns(config, engines, specs, Path(tmp), sampler, bar.update))
        talk_end = time.monotonic()
        speculation = speculation_cost(config, engines, specs[:speculation_turns], Path(tmp), sampler, traces) \
            if speculation_turns and getattr(config.agent, "speculative_reply", False) else {}
        bar.update()
        cutoffs = run_cutoffs(config, engines, cutoff_items(build(), cutoff_cases), Path(tmp), bar.update) \
            if cutoff_cases else {}
        naive = naive_ttfa_ms(config, engines, specs, Path(tmp))
        piper = piper_first_audio_ms(engines)
        bar.update()
        wake = wake_accuracy_and_cost(config)
        bar.update()
    bar.close()
    engines.close()
    idle = sampler.between(idle_start, idle_end)
    talk = sampler.between(idle_end, talk_end)
    answered = [t for t in traces if t["outcome"] == "answered"]
    errors = [word_errors(t["question"], t.get("transcript") or "") for t in traces if t.get("transcript") is not None]
    streaming = percentiles([t["ttfa_audio_ms"] for t in answered])
    naive_p = percentiles([ms for ms, _ in naive])
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": psutil.cpu_count(), "load_avg": psutil.getloadavg()},
        "turns": len(specs), "traces": len(traces), "tts_engine": engines.synthesizer.name,
        "outcomes": {o: sum(t["outcome"] == o for t in traces) for o in ("answered", "barged_in", "no_speech", "error")},
        "stages": {s: percentiles([t.get(s) for t in traces]) for s in STAGES},
        "cpu": {"idle_percent": statistics.fmean(s[1] for s in idle) if idle else None,
                "idle_rss_mib": max((s[2] for s in idle), default=None),
                "talking_percent": statistics.fmean(s[1] for s in talk) if talk else None,
                "talking_rss_mib": max((s[2] for s in talk), default=None),
                "talking_rss_llm_process_mib": max((s[3] for s in talk), default=None),
                "talking_rss_daemon_mib": max((s[2] - s[3] for s in talk), default=None)},
        "memory_per_model_mib": memory,
        "stt_wer": sum(e for e, _ in errors) / max(1, sum(n for _, n in errors)),
        "wake": wake,
        "speculation": {"speculative_turns": sum(bool(t.get("speculative")) for t in answered),
                        "answered": len(answered),
                        "discarded": sum(t.get("speculations_discarded", 0) for t in traces),
                        "continued": sum(t.get("continued", 0) for t in traces),
                        "early_end_of_turn": sum(t.get("end_of_turn_reason") == "complete" for t in answered),
                        **speculation},
        "cutoffs": cutoffs,
        "baselines": {"naive_ttfa": naive_p,
                      "ttfa_ratio_p50": streaming["p50"] / naive_p["p50"] if streaming and naive_p else None,
                      "ttfa_ratio_p90": streaming["p90"] / naive_p["p90"] if streaming and naive_p else None,
                      "ratio_by_reply_length": ratio_by_reply_length(answered, naive),
                      "piper": piper},
        "cpu_samples": [(round(t - idle_start, 2), c, r) for t, c, r, _ in sampler.samples],
        "per_turn": traces,
    }
    (outdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    write_plots(results, outdir, before)
    (outdir / "report.md").write_text(report_markdown(results, before))
    return results


def headline_rows(results: dict) -> list[tuple[str, str]]:
    fmt = lambda p: f"{p['p50']:.0f} / {p['p90']:.0f} / {p['max']:.0f} ms" if p else "n/a"  # noqa: E731
    rows = [(f"{stage} (P50 / P90 / max)", fmt(results["stages"].get(stage))) for stage in STAGES]
    b, w, c = results["baselines"], results["wake"], results["cpu"]
    rows += [
        ("TTFA streaming / naive (P50, P90)", f"{b['ttfa_ratio_p50']:.2f}, {b['ttfa_ratio_p90']:.2f} (target <= 0.3)"),
        ("naive TTFA (P50 / P90)", fmt(b["naive_ttfa"])),
    ]
    for name, r in (b.get("ratio_by_reply_length") or {}).items():
        if r["ratio_p50"] is not None:
            rows.append((f"TTFA streaming / naive, {name} (P50)",
                         f"{r['streaming_p50']:.0f} / {r['naive_p50']:.0f} ms = {r['ratio_p50']:.2f} "
                         f"(n {r['n']} / {r['naive_n']})"))
    rows += [
        (f"TTS first audio: streaming / whole utterance ({results.get('tts_engine', 'piper')})",
         f"{b['piper']['streaming_first_ms']:.0f} / {b['piper']['piper_whole_ms']:.0f} ms = {b['piper']['ratio']:.2f} (target <= 0.5)"),
        ("always-on CPU: ours / openWakeWord runtime",
         f"{w['edgeagent']['cpu_rtf']:.4f} / {w['openwakeword']['cpu_rtf']:.4f} = {w['cpu_ratio']:.2f} (target <= 1)"),
        ("wake FRR / false accepts per hour (ours)", f"{w['edgeagent']['frr']:.2f} / {w['edgeagent']['false_accepts_per_hour']:.1f}"),
        ("wake FRR / false accepts per hour (openWakeWord)",
         f"{w['openwakeword']['frr']:.2f} / {w['openwakeword']['false_accepts_per_hour']:.1f}"),
        ("CPU idle / talking (% of one core)", f"{c['idle_percent']:.1f} / {c['talking_percent']:.1f}"),
        ("RSS idle / talking (daemon + LLM process)", f"{c['idle_rss_mib']:.0f} / {c['talking_rss_mib']:.0f} MiB"
         + (f" (peaks: daemon {c['talking_rss_daemon_mib']:.0f}, LLM process {c['talking_rss_llm_process_mib']:.0f})"
            if c.get("talking_rss_daemon_mib") is not None else "")),
    ]
    memory = results.get("memory_per_model_mib") or {}
    if memory and "error" not in memory:
        rows.append(("RSS per model (MiB, each in a fresh process)", ", ".join(f"{k} {v:.0f}" for k, v in memory.items())))
    spec = results.get("speculation") or {}
    if spec:
        line = (f"{spec['speculative_turns']} of {spec['answered']} answers speculative; {spec['discarded']} held "
                f"replies discarded, {spec['continued']} turns continued; early end of turn {spec['early_end_of_turn']}")
        if spec.get("cpu_s_per_turn_off"):
            line += (f"; CPU per turn {spec['cpu_s_per_turn_on']} s on / {spec['cpu_s_per_turn_off']} s off "
                     f"({spec['extra_percent']:+.0f} %, first {spec['turns']} turns)")
        rows.append(("speculative replies", line))
    cut = results.get("cutoffs") or {}
    if cut:
        rows.append(("turns cut off early (unfinished requests + a thinking pause)",
                     f"{cut['cut_off_rate']:.1%} of {cut['n']} ({', '.join(f'{k} pause {v:.0%}' for k, v in cut['by_pause'].items())})"))
    rows += [
        ("STT WER (Whisper tiny.en, all voices, clean + noisy)", f"{results['stt_wer']:.3f}"),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in results["outcomes"].items())),
    ]
    return rows


def report_markdown(results: dict, before: dict | None = None) -> str:
    lines = [f"# edgeagent bench — {results['when']}", "",
             f"{results['turns']} generated turns through the real daemon (real time), "
             f"{results['machine']['cpus']} CPUs, load average {results['machine']['load_avg'][0]:.2f}.", "",
             "| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in headline_rows(results)]
    if before is not None:
        lines += ["", f"Before: {before['when']} (load average {before['machine']['load_avg'][0]:.2f}).", "",
                  "| stage (P50 / P90 / max) | before | after |", "| --- | --- | --- |"]
        fmt = lambda p: f"{p['p50']:.0f} / {p['p90']:.0f} / {p['max']:.0f}" if p else "n/a"  # noqa: E731
        for stage in STAGES:
            lines.append(f"| {stage} | {fmt(before['stages'].get(stage))} | {fmt(results['stages'].get(stage))} |")
    lines += ["", "![latency](latency.png)", "", "![where each turn's time goes](ttfa_breakdown.png)", "",
              "![cpu](cpu.png)", ""]
    return "\n".join(lines)


# where a turn's time goes, from the true end of speech: the parts of the path to its first audio, in order
BREAKDOWN = [("until the LLM was asked", "reply_start_ms"), ("LLM first token", "llm_ttft_ms"),
             ("first speakable chunk", "chunk_wait_ms"), ("TTS first chunk", "tts_first_chunk_ms")]


def breakdown(trace: dict) -> list[float]:
    """The BREAKDOWN parts of one answered turn and what is left of its TTFA (waiting for the end of turn
    to release a speculative reply, or the playout's start).  Runs from before speculative replies
    have no reply_start_ms: end of turn + STT final stand in for it."""
    start = trace.get("reply_start_ms")
    if start is None:
        start = (trace.get("end_of_turn_ms") or 0.0) + (trace.get("end_of_speech_to_final_ms") or 0.0)
    parts = [start] + [trace.get(key) or 0.0 for _, key in BREAKDOWN[1:]]
    return parts + [max(0.0, trace["ttfa_ms"] - sum(parts))]


def write_plots(results: dict, outdir: Path, before: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = results["per_turn"]
    fig, ax = plt.subplots(figsize=(9, 4))
    data = [[t[s] for t in traces if t.get(s) is not None] for s in STAGES]
    ax.boxplot([d or [0] for d in data], tick_labels=[s.replace("_ms", "") for s in STAGES], orientation="horizontal")
    ax.set_xlabel("ms")
    ax.set_title("per-stage latency")
    fig.tight_layout()
    fig.savefig(outdir / "latency.png", dpi=110)
    plt.close(fig)

    runs = ([("before: " + before["when"], before)] if before else []) + [("after: " + results["when"], results)]
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.6 * len(runs)), sharey=True, squeeze=False)
    labels = [name for name, _ in BREAKDOWN] + ["held for the end of turn / playout start"]
    for ax, (title, run) in zip(axes[:, 0], runs):
        answered = [t for t in run["per_turn"] if t["outcome"] == "answered" and t.get("ttfa_ms") is not None]
        answered.sort(key=lambda t: t["ttfa_ms"])
        parts = np.array([breakdown(t) for t in answered]) if answered else np.zeros((0, len(labels)))
        bottom = np.zeros(len(answered))
        for column, label in enumerate(labels):
            ax.bar(range(len(answered)), parts[:, column], bottom=bottom, label=label)
            bottom += parts[:, column]
        ax.plot(range(len(answered)), [t["end_of_turn_ms"] for t in answered], "k_", markersize=10, label="end of turn")
        ax.set_title(f"where each turn's time goes, true end of speech -> first audio ({title})", fontsize=9)
        ax.set_ylabel("ms")
    axes[-1, 0].set_xlabel("answered turns, by time to first audio")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(outdir / "ttfa_breakdown.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3))
    samples = results["cpu_samples"]
    ax.plot([s[0] for s in samples], [s[1] for s in samples])
    ax.set_xlabel("s (first 15 s: idle)")
    ax.set_ylabel("CPU % of one core")
    ax.set_title("CPU over the run")
    fig.tight_layout()
    fig.savefig(outdir / "cpu.png", dpi=110)
    plt.close(fig)


def compare(old: dict, new: dict) -> list[str]:
    """Human-readable deltas of the headline figures between two results.json."""
    lines = []
    for stage in STAGES:
        a, b = (old["stages"].get(stage) or {}), (new["stages"].get(stage) or {})
        if a and b:
            lines.append(f"{stage:28} P50 {a['p50']:8.1f} -> {b['p50']:8.1f} ({b['p50'] - a['p50']:+.1f})   "
                         f"P90 {a['p90']:8.1f} -> {b['p90']:8.1f} ({b['p90'] - a['p90']:+.1f})")
    for key in ("idle_percent", "talking_percent", "idle_rss_mib", "talking_rss_mib"):
        a, b = old["cpu"].get(key), new["cpu"].get(key)
        if a is not None and b is not None:
            lines.append(f"{key:28} {a:8.1f} -> {b:8.1f} ({b - a:+.1f})")
    lines.append(f"{'stt_wer':28} {old['stt_wer']:8.3f} -> {new['stt_wer']:8.3f} ({new['stt_wer'] - old['stt_wer']:+.3f})")
    return lines
