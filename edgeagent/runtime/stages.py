"""The voice loop assembled: engines loaded once, stages wired over them, live config pushed in.

``load_engines`` loads every model once, before READY (the slow part), and compiles the intent
templates.  ``wire`` builds the stages that use them for one audio output: endpointer, transcriber,
conversation, speaker, reply pipeline behind the intent replier (skills, timers, home control),
barge-in detector, telemetry and the turn controller.  ``Stages.configure`` is the one
way a live config change reaches them: each stage takes its own section.  Tests, benchmarks and
the CLI drive exactly this wiring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeagent.audio.base import AudioOut
from edgeagent.audio.echo import EchoReference, EchoTap
from edgeagent.audio.playout import Speaker
from edgeagent.audio.timeline import ClockedSink
from edgeagent.config import Config, secret_values
from edgeagent.ear.bargein import BargeInDetector, create_barge_in
from edgeagent.ear.clean import SpeechCleaner, create_cleaner
from edgeagent.ear.turn_model import TurnModel, create_turn_model
from edgeagent.ear.vad import SilenceEndpointer, VoiceActivity, create_endpointer
from edgeagent.ear.wake import WakeDetector
from edgeagent.events import Event, StateChanged, TranscriptPartial
from edgeagent.intents.home import HomeControl
from edgeagent.intents.honesty import LIMITS, ClaimVet, time_note
from edgeagent.intents.matcher import IntentMatcher
from edgeagent.intents.replier import IntentReplier
from edgeagent.intents.skills import Skills, Volume
from edgeagent.intents.timers import TimerStore
from edgeagent.intents.tools import ToolBox
from edgeagent.llm.base import LlmError
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.local import LocalLlm
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.llm.router import LlmRouter, cloud_settings
from edgeagent.logsetup import redact_secrets
from edgeagent.modelstore import model_path
from edgeagent.runtime.engine_guard import (StartGuard, build_recognizer, build_synthesizer, build_voice_activity,
                                            build_wake, extending_start_timeout)
from edgeagent.runtime.trace_sinks import TraceFanout, TraceSink
from edgeagent.stt.base import Recognizer
from edgeagent.stt.streaming import StreamingTranscriber
from edgeagent.tts.base import Synthesizer
from edgeagent.turn.controller import TurnController
from edgeagent.turn.reply import ReplyPipeline

log = logging.getLogger("edgeagent.runtime")


@dataclass
class Engines:
    """Every model, loaded and run once at start-up (before the daemon reports READY)."""

    wake: WakeDetector
    activity: VoiceActivity
    recognizer: Recognizer
    router: LlmRouter
    synthesizer: Synthesizer
    intents: IntentMatcher  # the compiled sentence templates (a few hundred ms to build: once)
    turn_model: TurnModel | None = None  # the end-of-turn model; None: silence alone
    degraded: dict[str, str] = field(default_factory=dict)  # family -> the fallback in use, and why

    def close(self) -> None:
        self.recognizer.close()
        self.router.close()
        if self.turn_model is not None:
            self.turn_model.close()


def build_router(config: Config, wait: bool = True, local_timeout_s: float = 60.0) -> LlmRouter:
    """Embedded model (unless disabled) plus the cloud endpoint (when configured).  With ``wait``
    False the embedded model's process is still loading: ``LocalLlm.wait_ready`` before use."""
    local = None
    if config.llm.local_enabled:
        path = Path(config.llm.local_model_path) if config.llm.local_model_path else \
            model_path("llm/smollm2-135m-instruct-q4_1", config.models_dir)
        local = LocalLlm(path, config.llm.max_tokens, config.llm.temperature, threads=config.llm.local_threads,
                         system_prompt=config.llm.system_prompt + LIMITS, request_timeout_s=local_timeout_s,
                         wait=wait)  # warmed as it is sent
    return LlmRouter(local, OpenAiChat.from_config(config.llm), config.llm.first_token_deadline_s,
                     cloud_settings=cloud_settings(config.llm))


def load_engines(config: Config, guard: StartGuard | None = None) -> Engines:
    """Every engine loaded and run once; the LLM's own process starts first, so it loads meanwhile.
    An in-process engine that keeps crashing (or fails) at start is replaced by its fallback (``guard``)."""
    guard = guard or StartGuard(config.state_dir)
    router = build_router(config, wait=False)
    try:
        wake = guard.load(config, "wake", build_wake)
        activity = guard.load(config, "vad", build_voice_activity)
        recognizer = guard.load(config, "stt", build_recognizer)
        synthesizer = guard.load(config, "tts", build_synthesizer)
        intents = IntentMatcher(config.intents)
        turn_model = _load_turn_model(config, guard)
        _wait_for_local_llm(router, guard)
    except BaseException:
        router.close()
        raise
    return Engines(wake, activity, recognizer, router, synthesizer, intents, turn_model,
                   degraded=dict(guard.degraded))


def _load_turn_model(config: Config, guard: StartGuard) -> TurnModel | None:
    """The end-of-turn model, or None (noted as degraded) when it cannot load: turns then end on silence."""
    if config.vad.turn_model == "none":
        return None
    try:
        with extending_start_timeout(f"turn ({config.vad.turn_model})", guard.step_timeout_s):
            return create_turn_model(config)
    except Exception as exc:
        log.error("end-of-turn model unavailable: %s", exc)
        guard.degraded["turn"] = f"{config.vad.turn_model} failed to load ({exc}); turns end on silence alone"
        return None


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


@dataclass
class Stages:
    """The wired voice loop over loaded engines, speaking into one audio output."""

    config: Config
    engines: Engines
    endpointer: SilenceEndpointer
    transcriber: StreamingTranscriber
    conversation: Conversation
    speaker: Speaker
    replier: IntentReplier  # intents first, then the LLM's ReplyPipeline (replier.pipeline)
    barge_in: BargeInDetector
    telemetry: TraceFanout
    controller: TurnController
    cleaner: SpeechCleaner

    async def configure(self, config: Config) -> None:
        """A valid live config change: each stage takes its own section, from the next frame or turn on."""
        new_secrets = set(secret_values(config)) - set(secret_values(self.config))
        if new_secrets:  # a new API key is scrubbed from logs before anything can log it
            redact_secrets(sorted(new_secrets))
        self.config = config
        self.controller.configure(config)
        self.engines.wake.configure(config.wake)
        self.endpointer.configure(config.vad)
        self.cleaner.configure(config.stt)
        await self.engines.router.configure(config.llm)
        self.conversation.configure(config.llm)
        self.replier.configure(config)  # intents, time zone, home-command deadline
        self.engines.synthesizer.configure(config.tts)
        self.speaker.configure(config.audio)
        self.barge_in.configure(config.agent)
        self.telemetry.configure(config.telemetry)
        logging.getLogger().setLevel(config.log.level.upper())

    async def close(self) -> None:
        """The stages' own threads and files; the engines stay loaded (whoever loaded them closes them)."""
        self.telemetry.close()
        self.transcriber.shutdown()
        await self.speaker.close()


def wire(config: Config, engines: Engines, audio_out: AudioOut, trace_sinks: list[TraceSink],
         on_state: Callable[[StateChanged], None] = lambda change: None,
         on_event: Callable[[Event, str], None] = lambda event, turn_id: None) -> Stages:
    """The voice loop over loaded engines, speaking into ``audio_out``.  ``on_event`` sees every event
    of the conversation with its turn's id (the kiosk's screen): the controller's, and partial transcripts."""
    telemetry = TraceFanout(trace_sinks)
    reference = EchoReference(audio_out.sample_rate)  # what the speaker played: the barge-in echo reference
    speaker = Speaker(engines.synthesizer, EchoTap(audio_out, reference), frame_ms=config.audio.frame_ms,
                      volume=config.audio.volume)
    endpointer = create_endpointer(config, engines.activity, engines.turn_model)
    cleaner = create_cleaner(config)
    transcriber = StreamingTranscriber(engines.recognizer,
                                       on_partial=lambda partial: (log_partial(partial), controller.observe(partial)))
    skills = Skills(config, TimerStore(config.state_dir / "timers.json"), Volume(speaker),
                    HomeControl(config.device.id, config.telemetry.include_text, config.intents.confirm_timeout_s))
    conversation = Conversation(config.llm.system_prompt, config.llm.history_turns,
                                limits=LIMITS, note=lambda: time_note(skills.now()))
    pipeline = ReplyPipeline(engines.router, conversation, speaker, vetting=ClaimVet,
                             tools=ToolBox(skills, engines.intents))
    replier = IntentReplier(pipeline, engines.intents, skills, config, on_event=on_event)
    barge_in = create_barge_in(config, reference, engines.wake)
    tick = audio_out.tick if isinstance(audio_out, ClockedSink) else None  # a file is clocked by the mic, a device by itself
    controller = TurnController(
        config, wake=engines.wake, endpointer=endpointer, transcriber=transcriber, replier=replier,
        barge_in=barge_in, publish_trace=telemetry.publish_trace,
        on_state=lambda change: (log_state(change), on_state(change)), tick_speaker=tick, on_event=on_event,
        clean=cleaner,
    )
    replier.controller = controller  # timers ring through it, like a remote `say`
    return Stages(config, engines, endpointer, transcriber, conversation, speaker, replier, barge_in, telemetry,
                  controller, cleaner)


def log_partial(partial: TranscriptPartial) -> None:
    log.debug("partial: %s", partial.text)


def log_state(change: StateChanged) -> None:
    log.info("state %s -> %s (%s)", change.old.value, change.new.value, change.reason)

