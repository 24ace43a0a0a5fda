"""First-boot provisioning from the boot partition, in a scratch root (the image runs the same code as root)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgeagent.config import ConfigError, load_config
from edgeagent.provision import Layout, expand_device_id, provision

IDENTITY = {"machine_id": "0123456789ab", "serial": "1a2b3c4d"}
EXAMPLE = Path(__file__).resolve().parent.parent / "image" / "edgeagent.toml.example"


def layout(tmp_path: Path) -> Layout:
    boot = tmp_path / "boot"
    boot.mkdir()
    return Layout(
        boot_dir=boot,
        etc_dir=tmp_path / "etc/edgeagent",
        dropin_dir=tmp_path / "etc/systemd/system/edgeagent.service.d",
        wifi_dest=tmp_path / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf",
        hostname_file=tmp_path / "etc/hostname",
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_and_secrets_move_off_the_boot_partition(tmp_path):
    lay = layout(tmp_path)
    (lay.boot_dir / "edgeagent.toml").write_text(
        '[device]\nid = "kitchen-{serial}"\n[mqtt]\nenabled = true\nhost = "broker.lan"\npassword = "s3cret"\n'
        'ca_file = "ca.crt"\nkey_file = "device.key"\n[llm]\ncloud_api_key = "sk-xyz"\n'
    )
    (lay.boot_dir / "ca.crt").write_text("CA CERT\n")
    (lay.boot_dir / "device.key").write_text("PRIVATE KEY\n")
    (lay.boot_dir / "wpa_supplicant.conf").write_text('network={\n ssid="home"\n psk="wifipass"\n}\n')
    (lay.boot_dir / "config.txt").write_text("untouched\n")

    done = provision(lay, IDENTITY)

    assert done is not None and done.device_id == "kitchen-1a2b3c4d" and done.wifi
    assert sorted(p.name for p in lay.boot_dir.iterdir()) == ["config.txt"]
    config_text = done.config_path.read_text()
    assert "s3cret" not in config_text and "sk-xyz" not in config_text
    assert mode(done.config_path) == 0o640 and mode(lay.etc_dir) == 0o750
    creds = lay.etc_dir / "credentials"
    assert (creds / "mqtt.password").read_text() == "s3cret\n" and mode(creds / "mqtt.password") == 0o600
    assert mode(creds) == 0o700
    assert (creds / "llm.cloud_api_key").read_text() == "sk-xyz\n"
    assert (creds / "mqtt.key").read_text() == "PRIVATE KEY\n"
    assert (lay.etc_dir / "certs/ca.crt").read_text() == "CA CERT\n"
    assert mode(lay.wifi_dest) == 0o600 and "wifipass" in lay.wifi_dest.read_text()
    assert lay.hostname_file.read_text() == "kitchen-1a2b3c4d\n"
    dropin = (lay.dropin_dir / "50-provisioned.conf").read_text()
    assert f"LoadCredential=mqtt.password:{creds / 'mqtt.password'}" in dropin
    assert f"LoadCredential=llm.cloud_api_key:{creds / 'llm.cloud_api_key'}" in dropin

    # The daemon's view, as systemd runs it: config file + $CREDENTIALS_DIRECTORY with the loaded credentials.
    run_creds = tmp_path / "run-credentials"
    run_creds.mkdir()
    for name in done.credentials:
        (run_creds / name).write_bytes((creds / name).read_bytes())
    config = load_config(done.config_path, env={"CREDENTIALS_DIRECTORY": str(run_creds)})
    assert config.device.id == "kitchen-1a2b3c4d"
    assert config.mqtt.password == "s3cret" and config.llm.cloud_api_key == "sk-xyz"
    assert config.mqtt.host == "broker.lan" and config.mqtt.ca_file == "/etc/edgeagent/certs/ca.crt"
    assert config.mqtt.key_file == "/run/credentials/edgeagent.service/mqtt.key"


def test_nothing_to_do_without_a_file(tmp_path):
    lay = layout(tmp_path)
    assert provision(lay, IDENTITY) is None
    assert not lay.etc_dir.exists()


@pytest.mark.parametrize(
    "text, key",
    [
        ("[mqtt]\nport = 99999\n", "mqtt.port"),
        ("[mqtt]\nca_file = \"missing.crt\"\n", "mqtt.ca_file"),
        ('[device]\nid = "x-{colour}"\n', "device.id"),
        ("[device\n", "<file>"),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ],
)
def test_bad_file_is_reported_and_left_in_place(tmp_path, text, key):
    lay = layout(tmp_path)
    (lay.boot_dir / "edgeagent.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        provision(lay, IDENTITY)
    assert err.value.key == key
    assert (lay.boot_dir / "edgeagent.toml").read_text() == text
    assert not lay.etc_dir.exists()


def test_naming_rule_uses_machine_identity():
    assert expand_device_id("spk-{machine_id}", IDENTITY) == "spk-0123456789ab"
    assert expand_device_id("fixed", IDENTITY) == "fixed"


def test_cli_provisions_the_shipped_example(tmp_path):
    """The example shipped on the image's boot partition is valid as-is; the CLI works on a scratch root."""
    boot = tmp_path / "boot/firmware"
    boot.mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("fedcba9876543210fedcba9876543210\n")
    (boot / "edgeagent.toml").write_text(EXAMPLE.read_text())
    out = subprocess.run(
        [sys.executable, "-m", "edgeagent", "provision", "--root", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    assert "edgeagent provision: device kitchen-fedcba987654:" in out.stdout
    assert not (boot / "edgeagent.toml").exists()
    assert (tmp_path / "etc/hostname").read_text() == "kitchen-fedcba987654\n"
    printed = subprocess.run(
        [sys.executable, "-m", "edgeagent", "-c", str(tmp_path / "etc/edgeagent/config.toml"), "provision", "--print-device-id"],
        capture_output=True, text=True, check=True,
    )
    assert printed.stdout.strip() == "kitchen-fedcba987654"
