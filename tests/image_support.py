"""Building the OS image and booting it in QEMU, for the slow image tests (`make test-image`).

Partitions are read and written as files (mtools for the FAT boot partition, debugfs for ext4), no
loop devices or mounts.  The amd64 image boots as a PC would: UEFI firmware (OVMF), GRUB from the
EFI system partition, the kernel of the slot GRUB picks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "image" / "out"
OVMF = Path("/usr/share/ovmf/OVMF.fd")
BOOT, ROOT_A, ROOT_B, DATA = 1, 2, 3, 4  # partition numbers


def require_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("building an image needs root (mmdebstrap root mode)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run `make image-deps`")


def build(arch: str, **env: str) -> tuple[Path, float]:
    """Build the image and its bundle (IMAGE_REUSE=1: test the image already in image/out, while
    iterating on a test; only when no build settings are given)."""
    start = time.monotonic()
    if env or not (os.environ.get("IMAGE_REUSE") and (OUT / f"edgeagent-{arch}.img").exists()):
        subprocess.run(["nice", "-n", "10", str(REPO / "image/build.sh"), arch], check=True,
                       env={**os.environ, **env})
    return OUT / f"edgeagent-{arch}.img", time.monotonic() - start


def copy_sparse(source: Path, dest: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(source), str(dest)], check=True)
    return dest


def partitions(image: Path) -> list[dict]:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True, check=True).stdout)
    return table["partitiontable"]["partitions"]


def fat(image: Path) -> str:
    """mtools image spec of the FAT boot partition (first partition)."""
    return f"{image}@@{partitions(image)[0]['start'] * 512}"


def ext4(image: Path, number: int) -> str:
    """e2fsprogs image spec of partition ``number``."""
    return f"{image}?offset={partitions(image)[number - 1]['start'] * 512}"


def mtools(*args: str) -> str:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    return subprocess.run(list(args), capture_output=True, text=True, check=True, env=env).stdout


def debugfs(image: Path, request: str, number: int = ROOT_A) -> str:
    return subprocess.run(["debugfs", "-R", request, ext4(image, number)], capture_output=True, text=True,
                          check=True).stdout


def add_boot_file(image: Path, name: str, text: str, workdir: Path) -> None:
    (workdir / Path(name).name).write_text(text)
    mtools("mcopy", "-o", "-i", fat(image), str(workdir / Path(name).name), f"::/{name}")


def add_unit(image: Path, name: str, text: str, workdir: Path, number: int = ROOT_A) -> None:
    """Write a unit into a root file system and enable it (debugfs: no mount, no loop device)."""
    unit = workdir / name
    unit.write_text(text)
    commands = workdir / f"{name}.debugfs"
    commands.write_text(f"write {unit} /etc/systemd/system/{name}\n"
                        f"symlink /etc/systemd/system/multi-user.target.wants/{name} /etc/systemd/system/{name}\n")
    subprocess.run(["debugfs", "-w", "-f", str(commands), ext4(image, number)], capture_output=True, check=True)
    assert name in debugfs(image, "ls /etc/systemd/system/multi-user.target.wants", number)


def replay_journals(image: Path) -> None:
    """QEMU was stopped hard: replay each ext4 journal first, as the next boot would."""
    for number in (ROOT_A, ROOT_B, DATA):
        subprocess.run(["e2fsck", "-fy", ext4(image, number)], capture_output=True, check=False)


def use_kvm() -> bool:
    """KVM only when asked for (IMAGE_QEMU_ACCEL=kvm): /dev/kvm can be there and still not run a guest
    (nested on this project's build machine it hangs, and OVMF stops with a KVM emulation failure)."""
    return os.environ.get("IMAGE_QEMU_ACCEL") == "kvm" and os.access("/dev/kvm", os.R_OK | os.W_OK)


class Vm:
    """The amd64 image in QEMU (q35, UEFI), serial console to a file; reboots stay in the same process."""

    def __init__(self, image: Path, workdir: Path, *, network: bool, kvm: bool, journal_on_console: bool = True):
        self.console = workdir / "console.log"
        self.started = time.monotonic()
        if journal_on_console:  # the journal on the console too: milestones and, on failure, the daemon's words
            add_boot_file(image, "EFI/BOOT/cmdline-extra.cfg",
                          'set extra_cmdline="systemd.journald.forward_to_console=1"\n', workdir)
        accel = ["-accel", "kvm", "-cpu", "host"] if kvm else ["-accel", "tcg", "-cpu", "max"]
        nic = ["-nic", "user,model=virtio-net-pci"] if network else ["-nic", "none"]
        self.process = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "q35", *accel, "-smp", "2", "-m", "1536", "-bios", str(OVMF), *nic,
             "-display", "none", "-serial", f"file:{self.console}",
             # a real (emulated) sound card, so the daemon opens a microphone before READY as on a device
             "-audiodev", "none,id=snd0", "-device", "ich9-intel-hda", "-device", "hda-duplex,audiodev=snd0",
             "-drive", f"file={image},format=raw,if=virtio"])

    def text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_for(self, pattern: str | re.Pattern, timeout: float, after: int = 0) -> re.Match:
        """The first match of ``pattern`` in the console at or after offset ``after``."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            match = regex.search(self.text(), after)
            if match:
                return match
            time.sleep(1)
        raise AssertionError(f"not seen on the console within {timeout:.0f} s: {regex.pattern}\n"
                             f"--- console tail ---\n{self.text()[-6000:]}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
