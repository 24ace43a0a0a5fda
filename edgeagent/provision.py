"""First-boot provisioning: move ``edgeagent.toml`` (and Wi-Fi, certificates) off the FAT boot partition.

One image is flashed onto many cards; each card gets its own settings by dropping files on the
boot partition, which any laptop can write.  On first boot this runs before the daemon:
it validates the file, expands the device naming rule, writes ``/etc/edgeagent/config.toml``
(0640 root:edgeagent) with the secrets split out into root-only files that systemd hands to the
daemon with ``LoadCredential=``, and deletes everything it consumed from the FAT partition,
which has no permissions at all.  A bad file is left in place and reported: nothing is lost.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.config import Config, ConfigError, _toml_value, build_config

CONFIG_NAME = "edgeagent.toml"
WIFI_NAME = "wpa_supplicant.conf"
SERVICE = "edgeagent.service"
CREDENTIALS_RUNTIME_DIR = Path("/run/credentials") / SERVICE
# mqtt.<key> naming files on the boot partition: copied into /etc/edgeagent; the private key becomes a credential.
CERT_KEYS = ("ca_file", "cert_file")
PRIVATE_KEY = "key_file"


@dataclass(frozen=True)
class Layout:
    """Where provisioning reads and writes (a scratch root in tests, / on a device)."""

    boot_dir: Path = Path("/boot/firmware")
    etc_dir: Path = Path("/etc/edgeagent")
    dropin_dir: Path = Path("/etc/systemd/system") / f"{SERVICE}.d"
    wifi_dest: Path = Path("/etc/wpa_supplicant/wpa_supplicant-wlan0.conf")
    hostname_file: Path = Path("/etc/hostname")
    group: str = "edgeagent"

    @classmethod
    def under(cls, root: Path) -> "Layout":
        """The device layout below ``root`` (``/`` on a device, a mounted image or scratch dir otherwise)."""
        default = cls()
        return cls(**{f.name: root / getattr(default, f.name).relative_to("/") for f in dataclasses.fields(cls) if f.name != "group"})


@dataclass(frozen=True)
class Provisioned:
    device_id: str
    config_path: Path
    credentials: tuple[str, ...]  # credential names, e.g. "mqtt.password"
    wifi: bool
    removed: tuple[Path, ...]


def machine_identity(root: Path = Path("/")) -> dict[str, str]:
    """Values a naming rule may use: ``{serial}`` (Raspberry Pi board serial, else machine id) and ``{machine_id}``."""
    machine_id = _read(root / "etc/machine-id")[:12]
    serial = _read(root / "sys/firmware/devicetree/base/serial-number").strip("\x00").lstrip("0")
    return {"machine_id": machine_id or "unknown", "serial": serial[-8:] or machine_id or "unknown"}


def expand_device_id(rule: str, identity: dict[str, str]) -> str:
    """``"kitchen-{serial}"`` -> ``"kitchen-1a2b3c4d"``; unknown placeholders are a config error."""
    try:
        return rule.format_map(identity)
    except (KeyError, ValueError, IndexError) as exc:
        raise ConfigError("device.id", rule, f"bad naming rule ({exc}); placeholders: {', '.join(sorted(identity))}") from None


def provision(layout: Layout, identity: dict[str, str]) -> Provisioned | None:
    """Consume the boot partition's provisioning files; None when there is nothing to do."""
    source = layout.boot_dir / CONFIG_NAME
    if not source.is_file():
        return None
    data = _read_toml(source)
    device = data.setdefault("device", {})
    if not isinstance(device, dict):
        raise ConfigError("device", device, "expected a table")
    if device.get("id"):
        device["id"] = expand_device_id(str(device["id"]), identity)
    config = build_config(data)  # validate everything before touching the system
    device_id = config.device.id or identity["machine_id"]
    consumed = [source]
    files: dict[Path, tuple[bytes, int, bool]] = {}  # dest -> (content, mode, group-readable)
    credentials: dict[str, bytes] = {}

    mqtt = data.get("mqtt", {})
    for key in (*CERT_KEYS, PRIVATE_KEY):
        name = mqtt.get(key, "")
        if not name or Path(name).is_absolute():
            continue
        cert = _boot_file(layout.boot_dir, name, f"mqtt.{key}")
        consumed.append(cert)
        if key == PRIVATE_KEY:
            credentials["mqtt.key"] = cert.read_bytes()
            mqtt[key] = str(CREDENTIALS_RUNTIME_DIR / "mqtt.key")
        else:
            dest = layout.etc_dir / "certs" / cert.name
            files[dest] = (cert.read_bytes(), 0o640, True)
            mqtt[key] = str(Path("/etc/edgeagent/certs") / cert.name)
    for section, values in data.items():
        for key in [k for k, v in values.items() if v and _is_secret(config, section, k)]:
            credentials[f"{section}.{key}"] = f"{values.pop(key)}\n".encode()

    gid = _group_id(layout.group)
    config_path = layout.etc_dir / "config.toml"
    files[config_path] = (_dump_toml(data).encode(), 0o640, True)
    for name, secret in credentials.items():
        files[layout.etc_dir / "credentials" / name] = (secret, 0o600, False)
    dropin = "".join(
        f"LoadCredential={name}:{layout.etc_dir / 'credentials' / name}\n" for name in sorted(credentials)
    )
    files[layout.dropin_dir / "50-provisioned.conf"] = (
        f"# written by `edgeagent provision` from {CONFIG_NAME} on the boot partition\n[Service]\n{dropin}".encode(),
        0o644,
        False,
    )
    wifi = layout.boot_dir / WIFI_NAME
    has_wifi = wifi.is_file()
    if has_wifi:
        files[layout.wifi_dest] = (wifi.read_bytes(), 0o600, False)
        consumed.append(wifi)
    files[layout.hostname_file] = (f"{device_id}\n".encode(), 0o644, False)

    for dest, (content, mode, group_readable) in files.items():
        _write_atomic(dest, content, mode, gid if group_readable else None)
    _restrict_dir(layout.etc_dir, 0o750, gid)  # the daemon's group reads its config; nobody else
    _restrict_dir(layout.etc_dir / "credentials", 0o700, None)  # systemd (root) hands secrets over
    for path in consumed:
        _wipe(path)
    return Provisioned(device_id, config_path, tuple(sorted(credentials)), has_wifi, tuple(consumed))


# ---------------------------------------------------------------- helpers


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("<file>", str(path), f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", str(path), f"not valid TOML: {exc}") from None
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(section, values, "expected a table")
    return data


def _is_secret(config: Config, section: str, key: str) -> bool:
    fields = {f.name: f for f in dataclasses.fields(getattr(config, section))}
    return bool(fields[key].metadata.get("secret"))


def _boot_file(boot_dir: Path, name: str, key: str) -> Path:
    path = (boot_dir / name).resolve()
    if boot_dir.resolve() not in path.parents or not path.is_file():
        raise ConfigError(key, name, f"no such file on the boot partition ({boot_dir})")
    return path


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _dump_toml(data: dict[str, Any]) -> str:
    out = ["# provisioned from the boot partition on first boot; secrets are in credentials/ (LoadCredential)"]
    for section, values in data.items():
        out.append(f"\n[{section}]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    return "\n".join(out) + "\n"


def _restrict_dir(path: Path, mode: int, gid: int | None) -> None:
    os.chmod(path, mode)
    if gid is not None and os.geteuid() == 0:
        os.chown(path, 0, gid)


def _write_atomic(dest: Path, content: bytes, mode: int, gid: int | None) -> None:
    """Write via a temporary file created with the final mode, so a secret is never world-readable."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fchmod(fd, mode)
        if gid is not None and os.geteuid() == 0:
            os.fchown(fd, 0, gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)


def _wipe(path: Path) -> None:
    """Overwrite then delete: FAT keeps deleted clusters readable until they are reused."""
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.write(b"\0" * size)
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

