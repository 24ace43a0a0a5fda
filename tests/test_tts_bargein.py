"""Barge-in on a microphone that hears the agent's own reply (echo) and, sometimes, the user."""

import numpy as np
import pytest

from edgeagent.audio.echo import EchoReference, create_echo_canceller
from edgeagent.audio.frames import Frame, frame_samples
from edgeagent.audio.wav import read_audio
from edgeagent.ear.bargein import BargeInDetector
from edgeagent.ear.vad import SileroActivity
from edgeagent.events import BargeIn, BargeInCleared, BargeInOnset
from edgeagent.modelstore import model_path
from edgeagent.config import load_config
from edgeagent.ear.wake import create_wake_detector
from tests.speech import espeak_wav, piper_wav, room_noises
from tests.tts_helpers import voice_activity

REPLY = ("Sure. The forecast for today is mostly sunny with a high of twenty two degrees, "
         "and tomorrow looks cloudy with a chance of rain later in the evening.")
USER_AT_S = 1.6
ECHO_GAIN, ECHO_DELAY_S = 0.4, 0.04


def _mic(with_user: bool, user_wav=None):
    reply = read_audio(espeak_wav(REPLY, "en-gb"))  # espeak-ng renders the same every time
    echo = np.concatenate([np.zeros(int(ECHO_DELAY_S * 16000)), reply.astype(np.float32) * ECHO_GAIN])
    mic = echo.copy()
    if with_user:
        user = read_audio(user_wav or espeak_wav("stop, wait a moment please")).astype(np.float32) * 0.7
        start = int(USER_AT_S * 16000)
        mic[start : start + len(user)] += user[: len(mic) - start]
    return reply, np.clip(mic, -32768, 32767).astype(np.int16)


def _events(detector: BargeInDetector, reference: EchoReference, reply: np.ndarray, mic: np.ndarray) -> list:
    """Play the reply frame by frame (the reference) while feeding the mic; every event up to the first BargeIn."""
    n = frame_samples(20)
    detector.start()
    events = []
    for i in range(0, len(mic) - n + 1, n):
        reference.played(reply[i : i + n] if i < len(reply) else np.zeros(n, np.int16))
        event = detector.process(Frame(mic[i : i + n], i // n, i / 16000, t=i / 16000))
        if event is not None:
            events.append(event)
            if isinstance(event, BargeIn):
                break
    return events


def _run(detector: BargeInDetector, reference: EchoReference, reply: np.ndarray, mic: np.ndarray):
    """The BargeIn that stopped the reply, or None."""
    return next((e for e in _events(detector, reference, reply, mic) if isinstance(e, BargeIn)), None)


def _detector(canceller, vad=True, stop_word=""):
    config = load_config(env={})
    config.wake.stop_word = stop_word
    reference = EchoReference(16000)
    wake = create_wake_detector(config)
    wake.set_speaking(True)  # the agent is speaking: the stop word is armed
    speech = SileroActivity(model_path("silero-vad", config.models_dir)) if vad else None
    return BargeInDetector(reference, wake, vad=voice_activity(config) if vad else None, speech=speech,
                           canceller=canceller, min_speech_ms=config.agent.barge_in_min_speech_ms), reference


@pytest.fixture(params=["aec", "ducking"])
def canceller(request):
    if request.param == "ducking":
        return None
    aec = create_echo_canceller(True)
    assert aec is not None, "pywebrtc-audio is not installed (pip install 'edgeagent[aec]')"
    return aec


def test_user_interruption_over_the_echo_ducks_then_stops_the_reply(canceller):
    reply, mic = _mic(with_user=True)
    detector, reference = _detector(canceller)
    events = _events(detector, reference, reply, mic)
    onsets = [e for e in events if isinstance(e, BargeInOnset) and e.t >= USER_AT_S]
    stop = events[-1]
    assert isinstance(stop, BargeIn) and stop.source == "vad"
    assert onsets and USER_AT_S <= onsets[0].t <= USER_AT_S + 0.2  # it yields at once
    # the stop needs min_speech_ms of what Silero calls speech: the user's, the echo is cancelled or too quiet
    assert USER_AT_S + detector.min_speech_ms / 1000 <= stop.t <= USER_AT_S + 0.8
    began = stop.t - stop.speech_ms / 1000  # the next turn listens from there, with the pre-roll before it
    assert USER_AT_S - 0.05 <= began and began - load_config(env={}).vad.preroll_ms / 1000 <= USER_AT_S + 0.1


def test_the_agents_own_voice_alone_does_not_barge_in(canceller):
    reply, mic = _mic(with_user=False)
    detector, reference = _detector(canceller)
    events = _events(detector, reference, reply, mic)
    assert not any(isinstance(e, BargeIn) for e in events)
    if canceller is not None:
        assert events == []  # the echo is cancelled: not even a duck
    # every duck is lifted again: the reply never stays quiet
    assert sum(isinstance(e, BargeInOnset) for e in events) == sum(isinstance(e, BargeInCleared) for e in events)


@pytest.mark.parametrize("sound", list(room_noises()))
def test_coughs_and_knocks_duck_the_reply_and_it_goes_on(sound):
    """A cough, a knock, a clap over the reply: WebRTC VAD hears a voice and the reply ducks; Silero
    hears no speech, so it comes back to full level and is never stopped."""
    reply, mic = _mic(with_user=False)
    start = int(USER_AT_S * 16000)
    noise = room_noises()[sound]
    mic = mic.copy()
    mic[start : start + len(noise)] = np.clip(mic[start : start + len(noise)].astype(np.int32) + noise, -32768, 32767)
    detector, reference = _detector(create_echo_canceller(True))
    events = _events(detector, reference, reply, mic)
    assert not any(isinstance(e, BargeIn) for e in events), events
    if any(isinstance(e, BargeInOnset) for e in events):
        assert isinstance(events[-1], BargeInCleared)


@pytest.mark.parametrize("says, fires", [("Alexa.", True), ("Stop, wait a moment please.", False)])
def test_without_vad_only_the_stop_word_said_over_the_reply_barges_in(says, fires):
    """The stop word is heard on the echo-cancelled microphone (the one stop-word path); other speech is not
    an interruption when barge-in by voice activity is off."""
    reply, mic = _mic(with_user=True, user_wav=piper_wav(says))
    detector, reference = _detector(create_echo_canceller(True), vad=False, stop_word="alexa")
    event = _run(detector, reference, reply, mic)
    if fires:
        assert event is not None and event.source == "stop_word" and USER_AT_S < event.t < USER_AT_S + 1.5
    else:
        assert event is None


def test_echo_canceller_removes_the_agents_voice_from_the_mic():
    """ERLE on a simulated speaker -> room -> mic path: the reply, delayed, attenuated and smeared
    by a short decaying reflection tail; measured after the canceller has converged (first 2 s skipped)."""
    aec = create_echo_canceller(True)
    assert aec is not None, "pywebrtc-audio is not installed (pip install 'edgeagent[aec]')"
    reply = read_audio(espeak_wav(REPLY, "en-gb")).astype(np.float32)
    rng = np.random.default_rng(7)
    room = np.zeros(int(0.05 * 16000), np.float32)
    room[int(ECHO_DELAY_S * 16000)] = ECHO_GAIN
    room += rng.normal(0, 0.004, len(room)).astype(np.float32) * np.exp(-np.arange(len(room)) / 200.0)
    echo = np.convolve(reply, room)[: len(reply)]
    n = frame_samples(20)
    cleaned = np.concatenate([aec.process(echo[i : i + n].astype(np.int16), reply[i : i + n].astype(np.int16))
                              for i in range(0, len(reply) - n + 1, n)]).astype(np.float32)
    lag = 128  # AEC3 hands its output back one internal block late
    settled = slice(2 * 16000, len(cleaned) - lag)
    residual = cleaned[settled.start + lag : settled.stop + lag]
    erle_db = 10 * np.log10(np.mean(echo[settled] ** 2) / max(np.mean(residual**2), 1e-9))
    assert erle_db >= 20, f"echo reduced by only {erle_db:.1f} dB"
