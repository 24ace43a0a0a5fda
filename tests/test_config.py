import pytest

from edgeagent.config import (
    REDACTED,
    Config,
    ConfigError,
    apply_partial,
    load_config,
    secret_values,
    to_dict,
    to_toml,
)


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_work_out_of_the_box():
    config = load_config(None, env={})
    assert isinstance(config, Config)
    assert config.audio.frame_ms == 20
    assert config.vad.silence_ms <= 500
    assert config.device.id  # derived from the machine
    assert config.paths.models_dir and config.paths.state_dir


def test_file_then_environment_override(tmp_path):
    path = write(tmp_path, '[vad]\nsilence_ms = 400\n[wake]\nmodels = ["alexa"]\n[device]\nid = "kitchen-1"\n')
    env = {"EDGEAGENT_VAD__SILENCE_MS": "350", "EDGEAGENT_WAKE__MODELS": "okay_nabu, hey_jarvis",
           "EDGEAGENT_MQTT__ENABLED": "yes", "EDGEAGENT_WAKE__THRESHOLDS": '{"alexa": 0.7}'}
    config = load_config(path, env=env)
    assert config.vad.silence_ms == 350
    assert config.wake.models == ["okay_nabu", "hey_jarvis"]
    assert config.mqtt.enabled is True
    assert config.wake.thresholds == {"alexa": 0.7}
    assert config.device.id == "kitchen-1"


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, "[audio]\nvolume = 0.25\n")
    assert load_config(None, env={"EDGEAGENT_CONFIG": str(path)}).audio.volume == 0.25


@pytest.mark.parametrize(
    "toml, key, reason",
    [
        ("[vad]\nsilence_ms = 50\n", "vad.silence_ms", "between 100 and 5000"),
        ("[vad]\nsilence_ms = 'long'\n", "vad.silence_ms", "expected int"),
        ("[vad]\nengine = 'magic'\n", "vad.engine", "one of 'webrtc', 'silero'"),
        ("[audio]\nframe_ms = 30\n", "audio.frame_ms", "one of 10, 20"),
        ("[mqtt]\nenabled = 1\n", "mqtt.enabled", "expected bool"),
        ("[wake]\nmodels = 'alexa'\n", "wake.models", "expected a list"),
        ("[wake]\nthresholds = { alexa = 'high' }\n", "wake.thresholds.alexa", "expected float"),
        ("[vad]\nsilense_ms = 300\n", "vad.silense_ms", "unknown key"),
        ("[nonsense]\nx = 1\n", "nonsense", "unknown key"),
        ("[device]\nid = 'a/b+#'\n", "device.id", "letters, digits"),
        ("vad = 3\n", "vad", "expected a table"),
    ],
)
def test_invalid_file_fails_fast_with_key_value_and_reason(tmp_path, toml, key, reason):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, toml), env={})
    assert info.value.key == key
    assert reason in str(info.value)
    assert key in str(info.value)


def test_unparseable_environment_value_names_the_key():
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"EDGEAGENT_VAD__SILENCE_MS": "soon"})
    assert info.value.key == "vad.silence_ms" and "soon" in str(info.value)


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[vad\n"), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_secrets_are_redacted_everywhere(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-very-secret\n")
    config = load_config(write(tmp_path, f'[llm]\ncloud_api_key_file = "{key_file}"\n'),
                         env={"EDGEAGENT_MQTT__PASSWORD": "hunter2"})
    assert config.llm.cloud_api_key == "sk-very-secret"
    assert config.mqtt.password == "hunter2"
    assert sorted(secret_values(config)) == ["hunter2", "sk-very-secret"]
    for text in (repr(config), str(to_dict(config)), to_toml(config)):
        assert "sk-very-secret" not in text and "hunter2" not in text
    assert to_dict(config)["llm"]["cloud_api_key"] == REDACTED
    assert to_dict(config, redact=False)["llm"]["cloud_api_key"] == "sk-very-secret"


def test_secret_error_does_not_print_the_secret(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[mqtt]\npassword = 987654321\n"), env={})
    assert info.value.key == "mqtt.password"
    assert "987654321" not in str(info.value) and REDACTED in str(info.value)


def test_unreadable_secret_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[mqtt]\npassword_file = "/nonexistent/pw"\n'), env={})
    assert info.value.key == "mqtt.password_file"


def test_systemd_credential_fills_a_secret(tmp_path):
    (tmp_path / "llm.cloud_api_key").write_text("from-credential")
    config = load_config(None, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.llm.cloud_api_key == "from-credential"


def test_apply_partial_validates_and_leaves_original_alone():
    config = load_config(None, env={})
    updated = apply_partial(config, {"audio": {"volume": 0.3}, "telemetry": {"include_text": True}})
    assert updated.audio.volume == 0.3 and updated.telemetry.include_text
    assert config.audio.volume == 0.8 and not config.telemetry.include_text
    with pytest.raises(ConfigError) as info:
        apply_partial(config, {"audio": {"volume": 7}})
    assert info.value.key == "audio.volume"
    assert config.audio.volume == 0.8


def test_toml_dump_round_trips(tmp_path):
    config = load_config(None, env={"EDGEAGENT_WAKE__THRESHOLDS": '{"alexa": 0.7}'})
    again = load_config(write(tmp_path, to_toml(config, redact=False)), env={})
    assert to_dict(again) == to_dict(config)
