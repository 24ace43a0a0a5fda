import subprocess
import sys

import numpy as np
import pytest
import soundfile
import soxr

from edgeagent.config import load_config
from edgeagent.tts.base import TtsError
from edgeagent.tts.espeak_voice import EspeakSynthesizer
from edgeagent.tts.factory import create_synthesizer
from tests.tts_helpers import synthesizer

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def _config(**tts):
    config = load_config(env={})
    for key, value in tts.items():
        setattr(config.tts, key, value)
    return config


@pytest.mark.parametrize("engine, rate", [("hibari", 24000), ("piper", 22050), ("espeak", 22050)])
def test_engines_speak_audible_int16_audio(engine, rate):
    voice = synthesizer(engine)
    audio = np.concatenate(list(voice.synthesize("Turn on the kitchen light.")))
    assert audio.dtype == np.int16 and voice.sample_rate == rate
    assert 0.6 < len(audio) / voice.sample_rate < 4.0
    assert np.abs(audio).max() > 3000


@pytest.mark.parametrize("engine", ["hibari", "piper"])
def test_length_scale_slows_speech(engine):
    fast = create_synthesizer(_config(engine=engine, length_scale=0.7))
    slow = create_synthesizer(_config(engine=engine, length_scale=1.5))
    text = "Speaking rate is configurable."
    n_fast = sum(len(b) for b in fast.synthesize(text))
    n_slow = sum(len(b) for b in slow.synthesize(text))
    assert n_slow > 1.6 * n_fast


def test_hibari_is_the_default_voice_and_whisper_understands_it():
    """The default voice says what it was given: Whisper hears every word (piper joe's bar)."""
    from edgeagent.stt import create_recognizer

    config = load_config(env={})
    assert config.tts.engine == "hibari"
    voice = synthesizer("hibari")
    whisper = create_recognizer(config)
    try:
        for text in ("Turn on the kitchen lights.", "The capital of France is Paris."):
            audio = np.concatenate(list(voice.synthesize(text)))
            heard = whisper.transcribe(soxr.resample(audio, voice.sample_rate, 16000).astype(np.int16)).text
            assert heard.lower().strip(".") == text.lower().strip("."), heard
    finally:
        whisper.close()


@pytest.mark.parametrize("engine", ["hibari", "piper"])
def test_speech_starts_at_once_and_sentences_are_not_far_apart(engine):
    """The first sample out is heard as the start of the answer: the voice must not open with silence
    (hibari's model puts 200-320 ms before each sentence and 300-460 ms after)."""
    voice = synthesizer(engine)
    blocks = list(voice.synthesize("It is noon, and the sun is out. Take a hat."))
    frame = voice.sample_rate // 50
    for block in blocks:
        frames = block[: len(block) // frame * frame].reshape(-1, frame).astype(np.float32)
        loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
        assert loud[0] * 20 <= 60, f"{loud[0] * 20} ms of silence first"
        assert (len(frames) - loud[-1] - 1) * 20 <= 300, f"{(len(frames) - loud[-1] - 1) * 20} ms of silence last"


def test_hibari_volume_and_a_fixed_timbre():
    quiet = create_synthesizer(_config(engine="hibari", volume=0.3))
    text = "The same words sound the same."
    once, again = (np.concatenate(list(synthesizer("hibari").synthesize(text))) for _ in range(2))
    assert np.array_equal(once, again)  # seeded: tests and benchmarks hear what they were written for
    assert np.abs(np.concatenate(list(quiet.synthesize(text)))).max() < 0.4 * np.abs(once).max()


def test_espeak_volume_and_text_that_looks_like_an_option():
    quiet = EspeakSynthesizer(volume=0.3)
    loud = synthesizer("espeak")
    text = "-w /tmp/pwned.wav --stdout hello"  # must be spoken, never parsed as arguments
    q = np.concatenate(list(quiet.synthesize(text)))
    l = np.concatenate(list(loud.synthesize(text)))
    assert len(l) > 22050 and np.abs(q).max() < 0.6 * np.abs(l).max()


def test_unknown_voice_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "en_GB-nobody.onnx"
    with pytest.raises(TtsError, match=r"voice model not found: .*en_GB-nobody\.onnx"):
        create_synthesizer(_config(engine="piper", voice=str(missing)))
    missing.write_bytes(b"not a model")
    with pytest.raises(TtsError, match=r"voice config .*not found: .*en_GB-nobody\.onnx\.json"):
        create_synthesizer(_config(engine="piper", voice=str(missing)))
    (tmp_path / "en_GB-nobody.onnx.json").write_text("{}")
    with pytest.raises(TtsError, match=r"cannot load piper voice .*en_GB-nobody\.onnx"):
        create_synthesizer(_config(engine="piper", voice=str(missing)))
    with pytest.raises(TtsError, match="espeak-ng voice 'xx-nonexistent' unusable"):
        create_synthesizer(_config(engine="espeak", espeak_voice="xx-nonexistent"))


def test_say_writes_a_wav_and_prints_time_to_first_audio(tmp_path):
    out = tmp_path / "said.wav"
    result = subprocess.run([sys.executable, "-m", "edgeagent", "say", "Hello from the command line.", "--output", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "first audio after" in result.stdout and "ms" in result.stdout
    data, rate = soundfile.read(out, dtype="int16")
    assert rate == 24000 and len(data) / rate > 1.0 and np.abs(data).max() > 3000  # hibari's rate


def test_say_with_a_missing_voice_fails_with_the_reason(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgeagent", "say", "Hi", "--output", str(tmp_path / "x.wav")],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "EDGEAGENT_TTS__ENGINE": "piper",
                                 "EDGEAGENT_TTS__VOICE": str(tmp_path / "gone.onnx")})
    assert result.returncode == 1
    assert "voice model not found" in result.stderr and "gone.onnx" in result.stderr
