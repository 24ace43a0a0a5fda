"""``edgeagent transcribe`` end to end on generated speech files."""

from __future__ import annotations

import json

from edgeagent.cli import main
from tests.speech import piper_wav


def test_transcribe_json_on_a_22khz_file(capsys):
    """piper writes 22.05 kHz: the command must resample it and print the transcript as JSON."""
    assert main(["transcribe", str(piper_wav("turn on the kitchen lights")), "--engine", "pocketsphinx",
                 "--json", "--partials"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "kitchen lights" in result["text"]
    assert result["engine"] == "pocketsphinx"
    assert result["partials"] and result["audio_s"] > 1.0


def test_transcribe_prints_partials_then_the_final_line(capsys):
    assert main(["transcribe", str(piper_wav("what is the weather like tomorrow")), "--engine", "pocketsphinx",
                 "--partials"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith("... ") for line in lines[:-1])
    assert lines[-1] == "what is the weather like tomorrow"


def test_transcribe_default_engine_is_whisper(capsys):
    assert main(["transcribe", str(piper_wav("what is the weather like tomorrow"))]) == 0
    assert capsys.readouterr().out.strip() == "What is the weather like tomorrow?"


def test_transcribe_bad_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    assert main(["transcribe", str(bad)]) == 2
    assert "not a readable audio file" in capsys.readouterr().err


def test_transcribe_missing_model_directory_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEAGENT_PATHS__MODELS_DIR", str(tmp_path))
    assert main(["transcribe", str(piper_wav("turn on the kitchen lights")), "--engine", "pocketsphinx"]) == 2
    assert "does not exist: run `edgeagent models install`" in capsys.readouterr().err
