"""Fleet config changes pushed into the running daemon, without a restart.

Every model is loaded once, before READY, and the stages keep the settings they were built
with.  A valid remote change to a live key (``remote_config.LIVE_KEYS``) is pushed into the
objects that hold it, so the next frame or the next turn uses it; keys that would need a model
reloaded are not live and wait for a clean restart (the report says which).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edgeagent.config import Config, LlmConfig, secret_values
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.logsetup import redact_secrets

if TYPE_CHECKING:
    from edgeagent.turn.controller import TurnController
    from edgeagent.runtime.daemon import Stages

log = logging.getLogger("edgeagent.config")

CLOUD_FIELDS = ("cloud_base_url", "cloud_model", "cloud_api_key", "request_timeout_s", "max_tokens", "temperature")


async def apply_live(config: Config, controller: "TurnController", stages: "Stages") -> None:
    old = controller.config
    new_secrets = set(secret_values(config)) - set(secret_values(old))
    if new_secrets:  # a new API key is scrubbed from logs before anything can log it (one filter per new secret)
        redact_secrets(sorted(new_secrets))
    controller.config = config  # follow-up window and barge-in look-back are read per turn
    stages.wake.configure(config.wake)
    stages.endpointer.cfg = config.vad
    await _apply_llm(old.llm, config.llm, stages)
    stages.synthesizer.tune(config.tts.length_scale, config.tts.volume)
    controller.responder.speaker.volume = config.audio.volume
    if controller.barge_in is not None:
        controller.barge_in.min_speech_ms = config.agent.barge_in_min_speech_ms
    for sink in controller.telemetry.sinks:
        if hasattr(sink, "include_text"):
            sink.include_text = config.telemetry.include_text
    logging.getLogger().setLevel(config.log.level.upper())


async def _apply_llm(old: LlmConfig, new: LlmConfig, stages: "Stages") -> None:
    router = stages.router
    router.first_token_deadline_s = new.first_token_deadline_s
    if router.local is not None:
        router.local.max_tokens, router.local.temperature = new.max_tokens, new.temperature
    stages.conversation.system_prompt, stages.conversation.max_turns = new.system_prompt, new.history_turns
    if any(getattr(old, name) != getattr(new, name) for name in CLOUD_FIELDS):
        previous = router.cloud
        router.set_cloud(OpenAiChat.from_config(new))
        log.info("LLM cloud endpoint now %s", new.cloud_base_url or "none (local only)")
        if previous is not None and hasattr(previous, "close"):
            await previous.close()
