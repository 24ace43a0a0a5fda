"""Wake word and end-of-turn on generated speech (real models, real VAD engines)."""

import asyncio
import collections
import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeagent.audio.frames import Frame
from edgeagent.audio.wav import WavSource, read_audio
from edgeagent.config import load_config
from edgeagent.events import NoSpeech, SpeechEnded, SpeechStarted
from edgeagent.ear.vad import create_endpointer, create_voice_activity, is_complete_sentence
from edgeagent.ear.wake import WakeModelError, create_wake_detector
from tests.conftest import REPO
from tests.speech import concat_wav, espeak_wav, hibari_wav, piper_wav

POSITIVES = [lambda: piper_wav("Alexa."), lambda: espeak_wav("Alexa"), lambda: espeak_wav("Alexa", "en-gb"),
             lambda: espeak_wav("Alexa", "en-us+f3", 140)]  # the default wake word (see WakeConfig.models)
NEGATIVES = ["What is the weather like today?", "Okay, now I am busy.", "Turn on the kitchen lights please."]


@pytest.fixture
def config():
    return load_config(None, env={})


def wake_on(config, parts, tmp_path, speaking=False):
    detector = create_wake_detector(config)
    detector.set_speaking(speaking)
    wav = concat_wav(tmp_path / "clip.wav", parts)

    async def run():
        return [d async for f in WavSource(wav).frames() for d in detector.process(f)]

    return asyncio.run(run())


@pytest.mark.parametrize("make_clip", POSITIVES)
def test_wake_word_fires_on_the_phrase_in_several_voices(config, tmp_path, make_clip):
    detections = wake_on(config, [0.5, make_clip(), 0.5], tmp_path)
    assert [d.word for d in detections] == ["alexa"]
    assert 0.5 < detections[0].audio_s < 2.5


@pytest.mark.parametrize("text", NEGATIVES)
def test_wake_word_ignores_other_speech(config, tmp_path, text):
    assert wake_on(config, [0.3, piper_wav(text), 0.3, espeak_wav(text), 0.3], tmp_path) == []


def test_wake_word_ignores_silence_and_noise(config, tmp_path):
    noise = tmp_path / "noise.wav"
    import soundfile
    soundfile.write(str(noise), (np.random.default_rng(7).normal(0, 3000, 16000 * 5)).astype(np.int16), 16000)
    assert wake_on(config, [2.0, noise, 2.0], tmp_path) == []


def test_threshold_is_per_model(config, tmp_path):
    config.wake.thresholds = {"alexa": 0.9999}
    assert wake_on(config, [0.5, piper_wav("Alexa."), 0.5], tmp_path) == []


def test_refractory_period(config, tmp_path):
    phrase = piper_wav("Alexa.")
    assert len(wake_on(config, [0.3, phrase, 0.2, phrase, 0.5], tmp_path)) == 1  # 2 s refractory
    config.wake.refractory_s = 0.0
    assert len(wake_on(config, [0.3, phrase, 0.2, phrase, 0.5], tmp_path)) == 2


def test_a_score_wobbling_around_the_threshold_fires_once(config):
    """After firing, a model re-arms only when its score falls well below the threshold: one long
    utterance whose score dips just under it (seen with piper's voice) is one detection."""
    config.wake.refractory_s = 0.0
    detector = create_wake_detector(config)
    slot = detector.slots[0]

    class Scripted:  # the trained model's output for a phrase, as the detector sees it
        info, scores = slot.model.info, iter([0.1, 0.9, 0.95, 0.8, 0.9, 0.85, 0.3, 0.2, 0.9, 0.1])

        def probabilities(self, samples, key=None):
            return [next(self.scores)]

    slot.model, slot.trigger.window = Scripted(), collections.deque(maxlen=1)
    fired = [bool(detector.process(Frame(np.zeros(320, np.int16), i, i * 0.02, 0.0))) for i in range(10)]
    assert fired == [False, True, False, False, False, False, False, False, True, False]


@pytest.mark.parametrize("text, complete", [
    ("What is the capital of France?", True),
    ("Turn on the kitchen lights.", True),
    ("turn on the kitchen lights", True),  # whisper does not always punctuate
    ("Stop!", True),
    ("Set a timer for", False),
    ("Set a timer for.", False),  # whisper punctuates a pause, the sentence is still open
    ("What's the weather like?", True),
    ("Play some music...", False),
    ("Remind me to,", False),
    ("", False),
])
def test_complete_sentence_rule(text, complete):
    assert is_complete_sentence(text) is complete


def test_stop_word_only_while_speaking(config, tmp_path):
    config.wake.models, config.wake.stop_word = ["okay_nabu"], "alexa"
    clip = [0.3, piper_wav("Alexa."), 0.5]
    assert wake_on(config, clip, tmp_path, speaking=False) == []
    assert [(d.word, d.phrase) for d in wake_on(config, clip, tmp_path, speaking=True)] == [("alexa", "Alexa")]


def test_missing_corrupt_and_custom_models(config, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(config.models_dir / "wake", models / "wake")
    config.paths.models_dir = str(models)
    config.wake.models = ["no_such_word"]
    with pytest.raises(WakeModelError, match="no wake model 'no_such_word'.*okay_nabu"):
        create_wake_detector(config)
    custom = models / "wake" / "custom"
    custom.mkdir()
    shutil.copy(models / "wake/microwakeword/okay_nabu.tflite", custom / "my_word.tflite")
    (custom / "my_word.json").write_text(
        (models / "wake/microwakeword/okay_nabu.json").read_text().replace("okay_nabu.tflite", "my_word.tflite"))
    config.wake.models = ["my_word"]
    assert [d.word for d in wake_on(config, [0.5, piper_wav("Okay Nabu."), 0.5], tmp_path)] == ["my_word"]
    (custom / "my_word.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(WakeModelError, match="my_word.tflite cannot be loaded"):
        create_wake_detector(config)
    (custom / "my_word.tflite").unlink()
    with pytest.raises(WakeModelError, match="my_word.tflite not found"):
        create_wake_detector(config)


def true_bounds(samples, offset_s):
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 500)
    return offset_s + loud[0] / 16000, offset_s + loud[-1] / 16000


def endpoint(config, parts, tmp_path, turn_model=None, settled_text=None):
    wav = concat_wav(tmp_path / "utt.wav", parts)
    endpointer = create_endpointer(config, create_voice_activity(config), turn_model)
    events, decided = [], {}

    async def run():
        first = True
        async for frame in WavSource(wav).frames():
            if first:
                endpointer.begin(frame)
                first = False
            for event in endpointer.process(frame, settled_text):
                events.append(event)
                decided[type(event)] = frame.audio_s + frame.duration_s

    asyncio.run(run())
    return events, decided, endpointer


@pytest.mark.parametrize("engine", ["webrtc", "silero"])
def test_speech_start_and_end_within_tolerance(config, tmp_path, engine):
    config = dataclasses.replace(config, vad=dataclasses.replace(config.vad, engine=engine))
    clip = piper_wav("Turn on the kitchen lights please.")
    start, end = true_bounds(read_audio(clip), 1.0)
    events, decided, endpointer = endpoint(config, [1.0, clip, 1.5], tmp_path)
    started = [e for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(started) == 1 and len(ended) == 1
    assert abs(started[0].audio_s - start) < 0.12
    assert abs(ended[0].audio_s - end) < 0.12
    assert decided[SpeechEnded] - end <= config.vad.silence_ms / 1000 + 0.06 + 0.04  # + one frame, + VAD hangover
    assert len(endpointer.preroll()) >= (config.vad.min_speech_ms / 1000) * 16000  # first syllable kept for STT


class AtOnce:
    """An end-of-turn model answered before the next frame (so a file read fast decides as live audio
    would): ``SmartTurn`` itself, or a fixed verdict for the rule table."""

    def __init__(self, model=None, probability: float | None = None):
        self.model, self.fixed, self.heard = model, probability, []

    def submit(self, audio):
        from concurrent.futures import Future

        self.heard.append(len(audio))
        done = Future()
        done.set_result(self.fixed if self.model is None else self.model.probability(audio))
        return done

    def close(self):
        pass


QUESTION = "What is the capital of France?"


@pytest.mark.parametrize("p_finished, settled, reason", [
    (0.9, QUESTION, "complete"),  # the model and the transcript agree: the early end
    (0.9, None, "complete"),  # an engine that does not decode pauses: the model alone
    (0.9, "What is the capital of", "open"),  # the transcript leaves it open: wait longest
    (0.1, QUESTION, "silence"),  # the model hears an unfinished turn: wait
    (0.9, "", "silence"),  # STT has not decoded the pause yet: wait for it (here: it never does)
])
def test_end_of_turn_rule(config, tmp_path, p_finished, settled, reason):
    config.vad.turn_model = "smart-turn"
    model = AtOnce(probability=p_finished)
    clip = piper_wav(QUESTION)
    _, end = true_bounds(read_audio(clip), 0.5)
    text = None if settled is None else (lambda: settled or None)
    events, decided, _ = endpoint(config, [0.5, clip, 2.0], tmp_path, model, text)
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ended) == 1 and ended[0].reason == ("silence" if reason == "open" else reason)
    waited = decided[SpeechEnded] - end
    limit = {"complete": config.vad.complete_silence_ms, "silence": config.vad.incomplete_silence_ms,
             "open": config.vad.open_silence_ms}[reason]
    assert limit / 1000 <= waited <= limit / 1000 + 0.1  # + the VAD's hangover and a frame
    assert len(model.heard) == 1 and model.heard[0] > 16000  # asked once, on the utterance (with its pre-roll)


@pytest.mark.parametrize("make", [piper_wav, hibari_wav, espeak_wav])
def test_smart_turn_hears_a_finished_question_as_finished(config, tmp_path, make):
    """smart-turn v3.2 itself, on the utterance as the endpointer keeps it: the early end."""
    from edgeagent.ear.turn_model import SmartTurn
    from edgeagent.modelstore import model_path

    smart = AtOnce(SmartTurn(model_path("smart-turn/v3.2-cpu", config.models_dir)))
    events, _, _ = endpoint(config, [0.5, make(QUESTION), 2.0], tmp_path, smart)
    assert [e.reason for e in events if isinstance(e, SpeechEnded)] == ["complete"]


def test_no_speech_timeout_and_max_length(config, tmp_path):
    events, _, _ = endpoint(config, [config.vad.no_speech_timeout_s + 0.5], tmp_path)
    assert [type(e) for e in events] == [NoSpeech]
    config.vad.max_utterance_s = 1.0
    events, _, _ = endpoint(config, [0.3, piper_wav("Tell me a long story about a dragon and a knight."), 1.0], tmp_path)
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert ends and ends[0].reason == "max_length"


def test_listen_cli_prints_wake_and_speech_times(tmp_path):
    wav = concat_wav(tmp_path / "in.wav", [0.5, piper_wav("Alexa."), 0.3, piper_wav("What time is it?"), 1.0])
    result = subprocess.run([sys.executable, "-m", "edgeagent", "listen", "--input", str(wav), "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["wake", "speech_start", "speech_end"], result.stderr[-1500:]
    assert events[0]["word"] == "alexa" and events[1]["time_s"] < events[2]["time_s"]


@pytest.mark.parametrize("phrase, make", [("Hey Jarvis", piper_wav), ("Hey Jarvis", espeak_wav), ("Alexa", espeak_wav)])
def test_openwakeword_models_on_litert(config, tmp_path, phrase, make):
    config.wake.engine = "openwakeword"
    config.wake.models = ["hey_jarvis", "alexa"]
    detections = wake_on(config, [0.5, make(phrase), 0.5], tmp_path)
    assert [d.word for d in detections] == [phrase.lower().replace(" ", "_")]
    assert wake_on(config, [0.3, piper_wav(NEGATIVES[0]), 0.3, espeak_wav(NEGATIVES[2]), 0.3], tmp_path) == []
