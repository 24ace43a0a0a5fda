"""Assembles the daemon: config -> stages -> turn controller, on a microphone or on WAV files.

``build_agent`` loads every model once (before READY), ``run_daemon`` is ``edgeagent run``,
``converse_file`` is ``edgeagent converse``.  Stage construction lives here and nowhere else,
so tests, benchmarks and the CLI all drive exactly the daemon's own wiring.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from typing import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeagent.agent import TurnController
from edgeagent.audio.timeline import ClockedSink
from edgeagent.audio.wav import WavSource
from edgeagent.audio.pyaudio_io import PyAudioMicrophone
from edgeagent.audio.resilient import ResilientSource
from edgeagent.audio.echo import EchoReference, EchoTap
from edgeagent.bargein import create_barge_in
from edgeagent.fleet.link import FleetLink
from edgeagent.service import notify, watchdog_loop
from edgeagent.voice_device import VoiceDevice
from edgeagent.config import Config
from edgeagent.engine_guard import (StartGuard, build_recognizer, build_synthesizer, build_voice_activity, build_wake,
                                    extending_start_timeout)
from edgeagent.events import StateChanged, TranscriptPartial
from edgeagent.llm.base import LlmError
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.local import LocalLlm
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.llm.router import LlmRouter
from edgeagent.modelstore import model_path
from edgeagent.responder import VoiceResponder
from edgeagent.stt.streaming import StreamingTranscriber
from edgeagent.tts.output import open_output
from edgeagent.tts.speaker import Speaker
from edgeagent.vad import create_endpointer
from edgeagent.telemetry import JsonlTraceSink, LogTraceSink, TraceFanout, TraceSink
from edgeagent.trace import TurnTrace

log = logging.getLogger("edgeagent.daemon")


@dataclass
class Stages:
    """Every model, loaded once at start-up (before the daemon reports READY)."""

    wake: object
    endpointer: object
    transcriber: StreamingTranscriber
    router: LlmRouter
    conversation: Conversation
    synthesizer: object
    degraded: dict[str, str] = dataclasses.field(default_factory=dict)  # family -> fallback in use, and why

    def close(self) -> None:
        self.transcriber.shutdown()
        self.transcriber.recognizer.close()
        self.router.close()


def build_router(config: Config, wait: bool = True, local_timeout_s: float = 60.0) -> LlmRouter:
    """Embedded model (unless disabled) plus the cloud endpoint (when configured).  With ``wait``
    False the embedded model's process is still loading: ``LocalLlm.wait_ready`` before use."""
    local = None
    if config.llm.local_enabled:
        path = Path(config.llm.local_model_path) if config.llm.local_model_path else \
            model_path("llm/smollm2-135m-instruct-q4_1", config.models_dir)
        local = LocalLlm(path, config.llm.max_tokens, config.llm.temperature, threads=config.llm.local_threads,
                         system_prompt=config.llm.system_prompt, request_timeout_s=local_timeout_s, wait=wait)
    return LlmRouter(local, OpenAiChat.from_config(config.llm), config.llm.first_token_deadline_s)


def _wait_for_local_llm(router: LlmRouter, guard: StartGuard) -> None:
    """The embedded model up, or noted as missing: a device still answers through the cloud (or apologises)."""
    if router.local is None:
        return
    try:
        with extending_start_timeout("llm (local)", guard.step_timeout_s):
            router.local.wait_ready()
    except LlmError as exc:
        log.error("embedded LLM unavailable: %s", exc)
        guard.degraded["llm"] = f"local model failed to start ({exc}); cloud only"
        router.local = None


def load_stages(config: Config, guard: StartGuard | None = None) -> Stages:
    """Every engine loaded and run once; the LLM's own process starts first, so it loads meanwhile.
    An in-process engine that keeps crashing (or fails) at start is replaced by its fallback (``guard``)."""
    guard = guard or StartGuard(config.state_dir)
    router = build_router(config, wait=False)
    try:
        wake = guard.load(config, "wake", build_wake)
        endpointer = create_endpointer(config, guard.load(config, "vad", build_voice_activity))
        transcriber = StreamingTranscriber(guard.load(config, "stt", build_recognizer), on_partial=log_partial)
        synthesizer = guard.load(config, "tts", build_synthesizer)
        _wait_for_local_llm(router, guard)
    except BaseException:
        router.close()
        raise
    return Stages(wake=wake, endpointer=endpointer, transcriber=transcriber, router=router,
                  conversation=Conversation(config.llm.system_prompt, config.llm.history_turns),
                  synthesizer=synthesizer, degraded=dict(guard.degraded))


def wire(config: Config, stages: Stages, sink, trace_sinks: list[TraceSink],
         on_state: Callable[[StateChanged], None] = lambda change: None) -> TurnController:
    """The turn controller over loaded stages, speaking into ``sink``."""
    telemetry = TraceFanout(trace_sinks)
    reference = EchoReference(sink.sample_rate)  # what the speaker played: the barge-in echo reference
    speaker = Speaker(stages.synthesizer, EchoTap(sink, reference), frame_ms=config.audio.frame_ms,
                      volume=config.audio.volume)
    responder = VoiceResponder(stages.router, stages.conversation, speaker, device=sink)
    controller = TurnController(
        config,
        wake=stages.wake,
        endpointer=stages.endpointer,
        transcriber=stages.transcriber,
        responder=responder,
        barge_in=create_barge_in(config, reference) if config.agent.barge_in_vad else None,
        publish_trace=telemetry.publish_trace,
        on_state=lambda change: (log_state(change), on_state(change)),
        tick_speaker=getattr(sink, "tick", None),  # a file sink is clocked by the mic; a device by itself
        silence_speaker=speaker.cancel,
    )
    responder.on_first_audio = controller.speaking_started
    controller.telemetry = telemetry
    return controller


def default_trace_sinks(config: Config, extra_jsonl: Path | None = None) -> list[TraceSink]:
    jsonl = Path(config.telemetry.jsonl_path) if config.telemetry.jsonl_path else config.state_dir / "turns.jsonl"
    sinks: list[TraceSink] = [JsonlTraceSink(jsonl, config.telemetry.include_text), LogTraceSink(config.telemetry.include_text)]
    if extra_jsonl is not None:
        sinks.append(JsonlTraceSink(extra_jsonl, include_text=True))  # the operator asked for this file explicitly
    return sinks


def without_acoustic_echo(config: Config) -> Config:
    """File input never hears the file output: there is no echo to cancel (and AEC run against a
    reference that never reaches the mic suppresses the user's own voice by ~16 dB)."""
    return dataclasses.replace(config, agent=dataclasses.replace(config.agent, echo_cancel=False))


async def converse_file(config: Config, input_wav: Path, output_wav: Path, realtime: bool = True,
                        traces_path: Path | None = None) -> list[TurnTrace]:
    """Run the real pipeline on a WAV and write the agent's voice time-aligned with it."""
    config = without_acoustic_echo(config)
    source = WavSource(input_wav, frame_ms=config.audio.frame_ms, realtime=realtime)
    stages = await asyncio.to_thread(load_stages, config)
    sink = ClockedSink(output_wav, frame_ms=config.audio.frame_ms)
    controller = wire(config, stages, sink, default_trace_sinks(config, traces_path))
    probes = asyncio.create_task(stages.router.probe_forever())
    try:
        await controller.run(source.frames(), pace_replies=not realtime)
    finally:
        probes.cancel()
        controller.telemetry.close()
        stages.close()
        await sink.close()
    return controller.finished


async def run_daemon(config: Config, input_wav: Path | None = None, output_wav: Path | None = None) -> bool:
    """``edgeagent run``: until SIGTERM.  Returns True when a remote ``restart`` was asked for."""
    device = link = None
    if config.mqtt.enabled:
        device = VoiceDevice(config)
        link = FleetLink(config, device, on_config=device.apply_config)
        config = link.config  # local config plus the fleet's persisted desired config
    notify("STATUS=loading models")
    stages = await asyncio.to_thread(load_stages, config)
    if input_wav is not None:
        config = without_acoustic_echo(config)
        source = WavSource(input_wav, frame_ms=config.audio.frame_ms, realtime=True)
        sink = ClockedSink(output_wav or Path(os.devnull), config.audio.frame_ms)
    else:
        def audio_status(status: str) -> None:
            notify(f"STATUS={status}")
            if link is not None:
                link.update_state(audio=status)

        source = ResilientSource(lambda: PyAudioMicrophone(config.audio.input_device, config.audio.frame_ms),
                                 on_status=audio_status, frame_ms=config.audio.frame_ms)
        await source.open()  # READY only once the microphone is really open
        sink = open_output(config)
    sinks = default_trace_sinks(config) + ([link] if link else [])

    def state_changed(change: StateChanged) -> None:
        notify(f"STATUS={ready_status(stages, change.new.value)}")
        if link is not None and device is not None:
            device._changed()

    controller = wire(config, stages, sink, sinks, on_state=state_changed)
    install_signal_handlers(controller)
    background = [asyncio.create_task(stages.router.probe_forever()), asyncio.create_task(watchdog_loop())]
    if link is not None and device is not None:
        device.attach(link)
        device.attach_controller(controller, stages)
        link.start()
        background.append(asyncio.create_task(_stop_on(device.restart_requested, controller)))
    notify(f"READY=1\nSTATUS={ready_status(stages)}")
    log.info("edgeagent ready (device %s)%s", config.device.id,
             "".join(f"; {family}: {why}" for family, why in stages.degraded.items()))
    try:
        await controller.run(source.frames())
    finally:
        notify("STOPPING=1")
        for task in background:
            task.cancel()
        await source.close()
        await sink.close()
        controller.telemetry.close()
        if link is not None:
            await link.stop()
        stages.close()
    return bool(device and device.restart_requested.is_set())


def ready_status(stages: Stages, state: str = "idle") -> str:
    """systemd's STATUS line: the agent's state, and any engine running on its fallback."""
    if not stages.degraded:
        return state
    return f"{state} (degraded: " + "; ".join(f"{family}: {why}" for family, why in stages.degraded.items()) + ")"


async def _stop_on(event: asyncio.Event, controller: TurnController) -> None:
    await event.wait()
    controller.stop()


def install_signal_handlers(controller: TurnController) -> None:
    loop = asyncio.get_running_loop()
    def stop() -> None:
        notify("STOPPING=1")  # at once: systemd's stop timeout runs from here, the turn may still finish
        controller.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


def log_partial(partial: TranscriptPartial) -> None:
    log.debug("partial: %s", partial.text)


def log_state(change: StateChanged) -> None:
    log.info("state %s -> %s (%s)", change.old.value, change.new.value, change.reason)
