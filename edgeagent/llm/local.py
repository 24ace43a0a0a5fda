"""The embedded model: llama.cpp in a supervised child process, spoken to over loopback HTTP.

``LlmWorker`` keeps one ``edgeagent.llm.server`` process alive: it starts it, warms the system
prompt into its KV cache, and when the process dies (a segfault or an illegal instruction in
native code) records why and starts it again with back-off.  ``LocalLlm`` is the router's
``local`` backend: an OpenAI-style stream to whatever address the worker has now, so a crash
ends only the answer in flight (with an error that names the signal) and the next turn is
answered by the restarted process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from edgeagent.config import LlmConfig
from edgeagent.llm.base import LlmError, Message
from edgeagent.llm.openai_client import OpenAiChat

log = logging.getLogger("edgeagent.llm.local")

START_TIMEOUT_S = 120.0  # a Pi 3 or a cold SD card loads slowly; a hung start is killed after this
FIRST_BACKOFF_S, MAX_BACKOFF_S = 1.0, 60.0
STABLE_S = 60.0  # a process that ran this long before dying restarts without back-off
# SmolLM2-135M loops at temperature 0.6 ("la France, la France, la France..." for 160 tokens, which the
# demo's follow-up then had to interrupt); llama.cpp's repetition penalty over the last 64 tokens stops it
LOCAL_SAMPLING = {"repeat_penalty": 1.2, "repeat_last_n": 64}


def describe_exit(returncode: int) -> str:
    """``-11`` -> ``SIGSEGV``; ``3`` -> ``exit status 3``."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


@dataclass(frozen=True)
class WorkerStatus:
    running: bool
    address: str | None
    restarts: int
    last_exit: str | None  # why the last process ended ("SIGSEGV"), None if none has
    detail: str


class LlmWorker:
    """Runs the LLM server process and restarts it when it dies; thread-safe, loop-independent."""

    def __init__(self, model_path: Path, threads: int = 0, context: int = 2048,
                 warm_messages: list[Message] | None = None, start_timeout_s: float = START_TIMEOUT_S):
        self.model_path = model_path
        self.command = [sys.executable, "-m", "edgeagent.llm.server", "--model", str(model_path),
                        "--threads", str(threads), "--context", str(context)]
        self.warm_messages = warm_messages or [{"role": "user", "content": "hi"}]
        self.start_timeout_s = start_timeout_s
        self.restarts = 0
        self.last_exit: str | None = None
        self.load_s: float | None = None
        self._process: subprocess.Popen | None = None
        self._address: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._start_error: str | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, wait: bool = True) -> None:
        """Start the supervisor; with ``wait``, return once the first process answers (LlmError if
        it could not start at all: a missing model, a runtime that fails to import)."""
        self._thread = threading.Thread(target=self._supervise, name="llm-worker", daemon=True)
        self._thread.start()
        if wait:
            self.wait_started()

    def wait_started(self) -> None:
        self._started.wait()
        if self._start_error is not None:
            self.stop()
            raise LlmError(self._start_error)

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    @property
    def address(self) -> str | None:
        """Base URL of the running server; None while it is (re)starting."""
        process = self._process
        if process is None or process.poll() is not None:
            return None
        return self._address

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def exit_reason(self, grace_s: float = 0.0) -> str | None:
        """Why the current process ended, if it has (asked of the process itself, not of the supervisor);
        ``grace_s``: a connection can break a moment before its dying process is reaped."""
        process = self._process
        if process is None:
            return self.last_exit
        try:
            code = process.wait(timeout=grace_s) if grace_s else process.poll()
        except subprocess.TimeoutExpired:
            return None
        return None if code is None else describe_exit(code)

    def status(self) -> WorkerStatus:
        address = self.address
        if address:
            detail = f"running (pid {self.pid})" + (f", restarted {self.restarts}x, last: {self.last_exit}" if self.restarts else "")
        else:
            detail = f"restarting after {self.last_exit}" if self.last_exit else "starting"
        return WorkerStatus(address is not None, address, self.restarts, self.last_exit, detail)

    # ------------------------------------------------------------ the supervisor thread

    def _supervise(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stopping.is_set():
            began = time.monotonic()
            error = self._launch()
            if error is not None and not self._started.is_set():
                self._start_error = error
                self._started.set()
                return
            self._started.set()
            if error is None:
                code = self._process.wait()
                if self._stopping.is_set():
                    return
                self.last_exit = describe_exit(code)
                log.error("local LLM process (pid %s) died: %s; restarting", self._process.pid, self.last_exit)
            else:
                self.last_exit = error
                log.error("local LLM process failed to restart: %s", error)
            self.restarts += 1
            backoff = FIRST_BACKOFF_S if time.monotonic() - began > STABLE_S else backoff
            if self._stopping.wait(backoff):
                return
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    def _launch(self) -> str | None:
        """Start one process and wait for its address line; an error text if it did not come up."""
        if not self.model_path.is_file():
            return f"local model {self.model_path} not found (run `edgeagent models install`)"
        env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        with self._lock:
            self._address = None  # the last process's address is no more
            process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            self._process = process
        timer = threading.Timer(self.start_timeout_s, process.kill)  # a hung load is not a start
        timer.start()
        try:
            line = process.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            code = process.wait()
            return f"local LLM process ended before it answered ({describe_exit(code)})"
        try:
            hello = json.loads(line)
            address = hello["address"]
        except (ValueError, KeyError, TypeError):
            process.kill()
            return f"local LLM process said {line[:120]!r} instead of its address"
        self.load_s = hello.get("load_s")
        try:
            self._warm(address)
        except OSError as exc:
            if process.poll() is not None:
                return f"local LLM process died while warming up ({describe_exit(process.returncode)})"
            log.warning("local LLM warm-up failed: %s", exc)
        with self._lock:
            self._address = address
        log.info("local LLM ready at %s (pid %d, loaded in %.2f s)", address, process.pid, self.load_s or 0)
        return None

    def _warm(self, address: str) -> None:
        """One token over the system prompt: the first turn then starts with that prefix cached."""
        body = json.dumps({"messages": self.warm_messages, "max_tokens": 1}).encode()
        request = urllib.request.Request(f"{address}/v1/chat/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=self.start_timeout_s).read()


class LocalLlm:
    """The router's ``local`` backend: the worker's server, streamed like any OpenAI endpoint."""

    name = "local"

    def __init__(self, model_path: Path, max_tokens: int = 160, temperature: float = 0.6, context: int = 2048,
                 threads: int = 0, system_prompt: str | None = None, request_timeout_s: float = 60.0,
                 wait: bool = True):
        if not model_path.is_file():
            raise LlmError(f"local model {model_path} not found (run `edgeagent models install`)")
        from edgeagent.llm.server import default_threads

        self.max_tokens, self.temperature = max_tokens, temperature
        self.threads = threads or default_threads()
        self.request_timeout_s = request_timeout_s
        warm = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": "hi"}]
        self.worker = LlmWorker(model_path, threads=self.threads, context=context, warm_messages=warm)
        self.worker.start(wait=wait)

    def wait_ready(self) -> None:
        """Block until the first process answers (the daemon loads its other engines meanwhile);
        LlmError if it could not start."""
        self.worker.wait_started()

    async def stream(self, messages: list[Message]) -> AsyncIterator[str]:
        address = self.worker.address
        if address is None:
            raise LlmError(f"local LLM is {self.worker.status().detail}")
        chat = OpenAiChat(f"{address}/v1", "local", timeout_s=self.request_timeout_s, max_tokens=self.max_tokens,
                          temperature=self.temperature, name=self.name, sampling=LOCAL_SAMPLING)
        try:
            async for token in chat.stream(messages):
                yield token
        except LlmError as exc:
            died = await asyncio.to_thread(self.worker.exit_reason, 1.0)
            if died is not None:
                raise LlmError(f"local LLM process crashed ({died}) during the answer; it is being restarted") from None
            raise exc
        finally:
            await chat.close()

    def configure(self, llm: LlmConfig) -> None:
        """Live config: generation limits of the next request."""
        self.max_tokens, self.temperature = llm.max_tokens, llm.temperature

    def close(self) -> None:
        self.worker.stop()
