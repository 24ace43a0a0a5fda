"""Loading the in-process native engines so that a crash cannot crash-loop the speaker.

Wake, VAD, STT and TTS run inside the daemon (they are fed every frame, a process hop would cost
more than they do), so a segfault or an illegal instruction in one of them kills the daemon and
systemd starts it again, into the same crash.  Each engine is therefore loaded and run once
(one frame, one decode, one synthesis) between two marks in ``<state_dir>/engine-starts.json``:
an attempt counted before, cleared once it ran.  An engine whose attempts pile up without ever
clearing has crashed the daemon at start that many times; after ``CRASH_LIMIT`` the next start
uses its fallback (hibari or piper -> espeak, Whisper -> pocketsphinx, ...) and says so in STATUS, MQTT state
and ``doctor``.  A software update (another version) tries the configured engine again.

Loading also keeps systemd's start timeout moving (``extending_start_timeout``): each engine gets
``STEP_TIMEOUT_S`` (``EXTEND_TIMEOUT_USEC``) with STATUS naming it, renewed every
``PROGRESS_CHECK_S`` for as long as the daemon and its children keep using CPU, so a slow board
(a Pi 3; an emulated PC, where piper's first synthesis took 12 minutes) is not killed while it makes progress,
and a load that really hangs (no CPU for ``STEP_TIMEOUT_S``, or longer than ``MAX_LOAD_S``) is
still stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from edgeagent import __version__
from edgeagent.config import Config
from edgeagent.runtime.service import notify

log = logging.getLogger("edgeagent.engines")

CRASH_LIMIT = 3  # starts that died inside one engine before its fallback is used
STEP_TIMEOUT_S = 180.0  # how long a load may go without using CPU before systemd gives up on it
PROGRESS_CHECK_S = 15.0  # how often a load that is using CPU renews the start timeout
PROGRESS_MIN_CPU = 0.05  # share of a CPU used since the last check that counts as progress
MAX_LOAD_S = 1800.0  # however busy, no engine load is extended past this (an endless loop is a hang too)
FAULT_INJECT_ENV = "EDGEAGENT_FAULT_INJECT"  # tests: "family:engine" raises SIGSEGV inside that engine's load

# family -> (config section, fallback per engine)
FALLBACKS: dict[str, dict[str, str]] = {
    "wake": {"microwakeword": "openwakeword", "openwakeword": "microwakeword"},
    "vad": {"webrtc": "silero", "silero": "webrtc"},
    "stt": {"whisper": "pocketsphinx", "vosk": "pocketsphinx"},
    "tts": {"hibari": "espeak", "piper": "espeak"},
}

T = TypeVar("T")


def inject_fault(family: str, engine: str) -> None:
    """Tests only: ``EDGEAGENT_FAULT_INJECT=tts:piper`` makes loading that engine die as a native crash would."""
    if os.environ.get(FAULT_INJECT_ENV) == f"{family}:{engine}":
        os.kill(os.getpid(), signal.SIGSEGV)


def with_engine(config: Config, family: str, engine: str) -> Config:
    """``config`` with ``<family>.engine`` set to ``engine`` (the section names are the families)."""
    section = getattr(config, family)
    return dataclasses.replace(config, **{family: dataclasses.replace(section, engine=engine)})


def configured_engine(config: Config, family: str) -> str:
    return getattr(config, family).engine


def _cpu_seconds() -> float:
    """CPU time of this process (``os.times``) and its descendants (the LLM server loads in one), read
    from /proc.  Few files: each read lets a busy loading thread hold the GIL for a switch interval."""
    own = os.times()
    ticks = os.sysconf("SC_CLK_TCK")
    total = own.user + own.system
    for pid in _descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # comm may hold spaces
        except (OSError, IndexError):
            continue  # it ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (Linux's /proc/PID/task/TID/children)."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_descendants(kid)]
    return found


@contextmanager
def extending_start_timeout(what: str, step_timeout_s: float = STEP_TIMEOUT_S, check_s: float = PROGRESS_CHECK_S,
                            max_s: float = MAX_LOAD_S) -> Iterator[None]:
    """Around one load: systemd's start timeout is ``step_timeout_s`` from now, renewed every ``check_s``
    while the load makes progress (uses CPU), with STATUS saying what loads and for how long."""
    notify(f"EXTEND_TIMEOUT_USEC={int(step_timeout_s * 1e6)}\nSTATUS=loading {what}")
    stop = threading.Event()
    started = time.monotonic()

    def renew() -> None:
        last = _cpu_seconds()
        while not stop.wait(check_s):
            cpu, elapsed = _cpu_seconds(), time.monotonic() - started
            if cpu - last >= PROGRESS_MIN_CPU * check_s and elapsed < max_s:
                notify(f"EXTEND_TIMEOUT_USEC={int(step_timeout_s * 1e6)}\nSTATUS=loading {what}: {elapsed:.0f} s")
            last = cpu

    thread = threading.Thread(target=renew, name="start-timeout", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class StartRecord:
    """What ``engine-starts.json`` holds for one engine."""

    attempts: int = 0  # loads begun and never finished: each one a start that died inside it
    version: str = __version__
    last_attempt: float = 0.0


@dataclass
class StartGuard:
    state_dir: Path
    step_timeout_s: float = STEP_TIMEOUT_S
    degraded: dict[str, str] = field(default_factory=dict)  # family -> what runs instead, and why

    @property
    def path(self) -> Path:
        return self.state_dir / "engine-starts.json"

    def load(self, config: Config, family: str, build: Callable[[Config], T]) -> T:
        """``build`` (which loads the engine and runs it once) for the configured engine, or for its
        fallback when the configured one keeps crashing at start or fails to load."""
        configured = configured_engine(config, family)
        fallback = FALLBACKS.get(family, {}).get(configured)
        crashes = self.crashes(family, configured)
        if fallback and crashes >= CRASH_LIMIT:
            reason = f"{configured} crashed the daemon {crashes} times while starting"
            return self._degrade(config, family, fallback, reason, build)
        try:
            return self._attempt(config, family, configured, build)
        except Exception as exc:
            if not fallback:
                raise
            return self._degrade(config, family, fallback, f"{configured} failed to load ({exc})", build)

    def _degrade(self, config: Config, family: str, fallback: str, reason: str, build: Callable[[Config], T]) -> T:
        log.error("%s engine: %s; using %s instead", family, reason, fallback)
        engine = self._attempt(config, family, fallback, build)
        self.degraded[family] = f"{reason}; using {fallback}"
        return engine

    def _attempt(self, config: Config, family: str, engine: str, build: Callable[[Config], T]) -> T:
        started = time.monotonic()
        self._count(family, engine, +1)
        with extending_start_timeout(f"{family} ({engine})", self.step_timeout_s):
            inject_fault(family, engine)
            loaded = build(with_engine(config, family, engine))
        self._count(family, engine, None)  # it loaded and ran once: not a crashing engine
        log.info("%s engine %s loaded in %.2f s", family, engine, time.monotonic() - started)
        return loaded

    # ------------------------------------------------------------ the record on disk

    def records(self) -> dict[str, StartRecord]:
        try:
            raw = json.loads(self.path.read_text())
            return {key: StartRecord(**value) for key, value in raw.items()}
        except (OSError, ValueError, TypeError):
            return {}

    def crashes(self, family: str, engine: str) -> int:
        record = self.records().get(f"{family}:{engine}")
        return record.attempts if record is not None and record.version == __version__ else 0

    def _count(self, family: str, engine: str, delta: int | None) -> None:
        """Add ``delta`` attempts (fsynced before the engine runs), or forget the engine (None)."""
        records = self.records()
        key = f"{family}:{engine}"
        if delta is None:
            if records.pop(key, None) is None:
                return
        else:
            old = records.get(key)
            attempts = old.attempts if old is not None and old.version == __version__ else 0
            records[key] = StartRecord(attempts + delta, __version__, time.time())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump({k: dataclasses.asdict(v) for k, v in records.items()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def forget(self) -> list[str]:
        """Clear every record (``edgeagent doctor --retry-engines``): the next start tries the configured engines."""
        keys = sorted(self.records())
        self.path.unlink(missing_ok=True)
        return keys


# ---------------------------------------------------------------- load and run once


SILENCE_FRAME_S = 0.02


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), np.int16)


def build_wake(config: Config):
    from edgeagent.audio.frames import Frame
    from edgeagent.ear.wake import create_wake_detector

    wake = create_wake_detector(config)
    wake.process(Frame(_silence(SILENCE_FRAME_S), 0, 0.0, time.monotonic()))
    wake.reset()
    return wake


def build_voice_activity(config: Config):
    from edgeagent.audio.frames import Frame
    from edgeagent.ear.vad import create_voice_activity

    activity = create_voice_activity(config)
    activity.speech_probability(Frame(_silence(SILENCE_FRAME_S), 0, 0.0, time.monotonic()))
    activity.reset()
    return activity


def build_recognizer(config: Config):
    from edgeagent.stt import create_recognizer

    recognizer = create_recognizer(config)
    recognizer.start()
    recognizer.feed(_silence(0.5))
    recognizer.finish()
    return recognizer


def build_synthesizer(config: Config):
    from edgeagent.tts.factory import create_synthesizer

    synthesizer = create_synthesizer(config)
    for _block in synthesizer.synthesize("Ready."):
        pass
    return synthesizer


BUILDERS: dict[str, Callable[[Config], Any]] = {
    "wake": build_wake, "vad": build_voice_activity, "stt": build_recognizer, "tts": build_synthesizer,
}
