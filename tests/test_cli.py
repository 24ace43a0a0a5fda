import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def edgeagent(*args, env=None, config=None):
    cmd = [sys.executable, "-m", "edgeagent"] + (["--config", str(config)] if config else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_help_lists_commands():
    out = edgeagent("--help").stdout
    for command in ("doctor", "models", "run"):
        assert command in out


def test_bad_config_fails_fast_with_key(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[vad]\nsilence_ms = 'soon'\n")
    result = edgeagent("models", "list", config=config)
    assert result.returncode == 2
    assert "vad.silence_ms" in result.stderr and "'soon'" in result.stderr and "expected int" in result.stderr


def test_doctor_explains_missing_models_and_redacts_secrets(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\nmodels_dir = "{tmp_path / "empty"}"\n'
                      '[llm]\ncloud_base_url = "http://127.0.0.1:9"\ncloud_api_key = "sk-doctor-secret"\n'
                      '[mqtt]\nenabled = true\nport = 9\n')
    result = edgeagent("doctor", "--show-config", config=config)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "run `edgeagent models install`" in result.stdout
    assert "127.0.0.1:9 unreachable" in result.stdout  # broker
    assert "the embedded model will answer" in result.stdout  # cloud LLM
    assert "sk-doctor-secret" not in result.stdout + result.stderr
    checks = json.loads(edgeagent("doctor", "--json", config=config).stdout)
    by_item = {c["item"]: c for c in checks}
    assert by_item["microwakeword/okay_nabu.tflite"]["level"] == "fail"
    assert by_item["tflite interpreter"]["level"] == "ok" and "ai-edge-litert" in by_item["tflite interpreter"]["detail"]
    assert by_item["input"]["level"] == "fail"  # this machine has no sound card


def test_doctor_reports_a_bad_config_as_a_failed_check(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[audio]\nvolume = 3.0\n")
    result = edgeagent("doctor", config=config)
    assert result.returncode == 1 and "audio.volume" in result.stdout and "between 0.0 and 1.0" in result.stdout
    assert "tflite interpreter" in result.stdout and "input" in result.stdout  # the other checks still ran


def test_models_verify_in_checkout():
    result = edgeagent("models", "verify")
    assert result.returncode == 0, result.stdout
    assert "models ok" in result.stdout
