"""The daemon: ``edgeagent run`` on a microphone and speaker (or WAV files), ``edgeagent converse``.

Engines load once (before READY), the stages are wired over them, the fleet link (when enabled)
and the kiosk's page (when enabled) act on the voice loop through ``VoiceRemote``, and systemd
hears READY, STATUS, WATCHDOG and STOPPING.  Everything the loop is made of comes from ``edgeagent.runtime.stages``, so tests,
benchmarks and the CLI drive exactly the daemon's own wiring.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path

from edgeagent.audio.output import open_audio_out
from edgeagent.audio.pipe import PipeSource
from edgeagent.audio.pyaudio_io import PyAudioMicrophone
from edgeagent.audio.resilient import ResilientSource
from edgeagent.audio.timeline import ClockedSink
from edgeagent.audio.wav import WavSource
from edgeagent.config import Config
from edgeagent.events import MicrophoneStatus, StateChanged
from edgeagent.fleet.link import FleetLink
from edgeagent.runtime.remote import VoiceRemote
from edgeagent.runtime.service import notify, watchdog_loop
from edgeagent.runtime.stages import Engines, load_engines, wire
from edgeagent.runtime.trace_sinks import JsonlTraceSink, LogTraceSink, TraceSink
from edgeagent.turn.controller import TurnController
from edgeagent.turn.trace import TurnTrace
from edgeagent.ui.screen import start_screen

log = logging.getLogger("edgeagent.runtime.daemon")


def default_trace_sinks(config: Config, extra_jsonl: Path | None = None) -> list[TraceSink]:
    jsonl = Path(config.telemetry.jsonl_path) if config.telemetry.jsonl_path else config.state_dir / "turns.jsonl"
    sinks: list[TraceSink] = [JsonlTraceSink(jsonl, config.telemetry.include_text),
                              LogTraceSink(config.telemetry.include_text)]
    if extra_jsonl is not None:
        sinks.append(JsonlTraceSink(extra_jsonl, include_text=True, pinned=True))  # the operator asked for this file
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
    engines = await asyncio.to_thread(load_engines, config)
    audio_out = ClockedSink(output_wav, frame_ms=config.audio.frame_ms)
    stages = wire(config, engines, audio_out, default_trace_sinks(config, traces_path))
    background = [asyncio.create_task(engines.router.probe_forever()), asyncio.create_task(stages.replier.run_timers())]
    try:
        await stages.controller.run(source.frames(), pace_replies=not realtime)
    finally:
        for task in background:
            task.cancel()
        await stages.close()
        engines.close()
        await audio_out.close()
    return stages.controller.finished


async def run_daemon(config: Config, input_wav: Path | None = None, output_wav: Path | None = None) -> bool:
    """``edgeagent run``: until SIGTERM.  Returns True when a remote ``restart`` was asked for.
    ``input_wav`` "-" reads raw 16 kHz PCM from standard input instead of a file."""
    remote = VoiceRemote(config)  # the fleet's commands and the page's controls
    link = None
    if config.mqtt.enabled:
        link = FleetLink(config, remote, on_config=remote.apply_config)
        config = link.config  # local config plus the fleet's persisted desired config
        remote.device_state.attach(link)
    screen = await start_screen(config, remote, remote.device_state)  # up first: it shows "starting"
    show = screen.feed.publish if screen is not None else lambda event, turn_id="": None
    notify("STATUS=loading models")
    engines = await asyncio.to_thread(load_engines, config)
    if input_wav is not None:
        config = without_acoustic_echo(config)
        source = PipeSource(frame_ms=config.audio.frame_ms) if str(input_wav) == "-" else \
            WavSource(input_wav, frame_ms=config.audio.frame_ms, realtime=True)
        audio_out = ClockedSink(output_wav or Path(os.devnull), config.audio.frame_ms)
    else:
        def audio_status(status: MicrophoneStatus) -> None:
            notify(f"STATUS={status.detail}")
            if link is not None:
                link.update_state(audio=status.detail)
            show(status)

        source = ResilientSource(lambda: PyAudioMicrophone(config.audio.input_device, config.audio.frame_ms),
                                 on_status=audio_status, frame_ms=config.audio.frame_ms)
        await source.open()  # READY only once the microphone is really open
        audio_out = open_audio_out(config)

    def state_changed(change: StateChanged) -> None:
        notify(f"STATUS={ready_status(engines, change.new.value)}")
        remote.state_changed()

    stages = wire(config, engines, audio_out, default_trace_sinks(config) + ([link] if link else []),
                  on_state=state_changed, on_event=show)
    install_signal_handlers(stages.controller)
    background = [asyncio.create_task(engines.router.probe_forever()), asyncio.create_task(watchdog_loop()),
                  asyncio.create_task(stages.replier.run_timers())]  # timers ring from READY on
    remote.attach(stages)
    if link is not None:
        link.start()
        background.append(asyncio.create_task(_stop_on(remote.device_state.restart_requested, stages.controller)))
    notify(f"READY=1\nSTATUS={ready_status(engines)}")
    if (confirming := remote.device_state.ready()) is not None:  # an OS update's new slot, now READY
        background.append(confirming)
    log.info("edgeagent ready (device %s)%s", config.device.id,
             "".join(f"; {family}: {why}" for family, why in engines.degraded.items()))
    try:
        await stages.controller.run(source.frames())
    finally:
        notify("STOPPING=1")
        for task in background:
            task.cancel()
        await source.close()
        await stages.close()
        await audio_out.close()
        if screen is not None:
            await screen.close()
        if link is not None:
            await link.stop()
        engines.close()
    return remote.device_state.restart_requested.is_set()


def ready_status(engines: Engines, state: str = "idle") -> str:
    """systemd's STATUS line: the agent's state, and any engine running on its fallback."""
    if not engines.degraded:
        return state
    return f"{state} (degraded: " + "; ".join(f"{family}: {why}" for family, why in engines.degraded.items()) + ")"


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
