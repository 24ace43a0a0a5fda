"""Chooses the backend per turn (cloud when reachable and healthy, else local) and fails over
mid-turn: a cloud stream that errors or misses its first-token deadline is replaced by the
local model in the same turn.  Reachability is known before the user speaks (background
probes with back-off, plus the outcome of real requests behind a circuit breaker), so an
offline device decides in microseconds and never waits on a dead network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from edgeagent.llm.base import ChatBackend, LlmError, Message

log = logging.getLogger("edgeagent.llm")


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; half-opens after ``cool_down_s``."""

    threshold: int = 2
    cool_down_s: float = 30.0
    failures: int = 0
    open_until: float = 0.0

    def is_open(self, now: float) -> bool:
        return self.failures >= self.threshold and now < self.open_until

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = now + self.cool_down_s

    def record_success(self) -> None:
        self.failures, self.open_until = 0, 0.0


@dataclass
class RouteResult:
    """What the trace needs: who answered, why, and when the first token came."""

    backend: str = ""
    reason: str = ""
    request_t: float = 0.0
    first_token_t: float | None = None
    tokens: int = 0
    failover_from: str | None = None


@dataclass
class LlmRouter:
    local: ChatBackend | None
    cloud: ChatBackend | None = None
    first_token_deadline_s: float = 1.5
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    cloud_reachable: bool | None = None  # None: not probed yet
    _reprobe: asyncio.Event | None = field(default=None, repr=False)  # made by probe_forever, in its loop

    def set_cloud(self, cloud: ChatBackend | None) -> None:
        """A new cloud endpoint (live fleet config): unknown reachability, closed circuit, probed now."""
        self.cloud, self.cloud_reachable = cloud, None
        self.breaker.record_success()
        if self._reprobe is not None:
            self._reprobe.set()

    def close(self) -> None:
        """Stop the embedded model's process (the cloud client closes with its loop)."""
        close = getattr(self.local, "close", None)
        if close is not None:
            close()

    def choose(self) -> tuple[ChatBackend, str]:
        now = time.monotonic()
        if self.cloud is None:
            return self._local(), "no cloud configured"
        if self.breaker.is_open(now):
            return self._local(), f"cloud circuit open after {self.breaker.failures} failures"
        if self.cloud_reachable is False:
            return self._local(), "cloud unreachable (probe)"
        return self.cloud, "cloud healthy" if self.cloud_reachable else "cloud not yet probed"

    def _local(self) -> ChatBackend:
        if self.local is None:
            raise LlmError("no LLM available: the cloud is down and the local model is disabled")
        return self.local

    async def stream(self, messages: list[Message], result: RouteResult) -> AsyncIterator[str]:
        """Tokens for this turn; ``result`` is filled in as they come."""
        backend, reason = self.choose()
        result.request_t, result.backend, result.reason = time.monotonic(), backend.name, reason
        if backend is self.cloud:
            try:
                async for token in self._with_deadline(backend.stream(messages), result):
                    yield token
                self.breaker.record_success()
                self.cloud_reachable = True
                return
            except (LlmError, TimeoutError) as exc:
                self.breaker.record_failure(time.monotonic())
                why = "missed first-token deadline" if isinstance(exc, TimeoutError) else str(exc)
                log.warning("cloud LLM failed (%s); continuing on the local model", why)
                result.failover_from, result.backend = "cloud", self._local().name
                result.reason = f"failover: cloud {why}" + (f" after {result.tokens} tokens" if result.tokens else "")
        async for token in self._count(self._local().stream(messages), result):
            yield token

    async def _with_deadline(self, tokens: AsyncIterator[str], result: RouteResult) -> AsyncIterator[str]:
        """Raises TimeoutError (and closes the stream) if the first token is later than the deadline."""
        iterator = aiter(tokens)
        try:
            deadline = result.request_t + self.first_token_deadline_s
            first = await asyncio.wait_for(anext(iterator), timeout=max(0.0, deadline - time.monotonic()))
        except StopAsyncIteration:
            return
        except BaseException:
            await iterator.aclose()
            raise
        self._note(result)
        yield first
        async for token in self._count(iterator, result):
            yield token

    async def _count(self, tokens: AsyncIterator[str], result: RouteResult) -> AsyncIterator[str]:
        iterator = aiter(tokens)
        try:
            async for token in iterator:
                self._note(result)
                yield token
        finally:
            await iterator.aclose()

    @staticmethod
    def _note(result: RouteResult) -> None:
        result.first_token_t = result.first_token_t or time.monotonic()
        result.tokens += 1

    async def probe_forever(self, interval_s: float = 30.0, max_backoff_s: float = 120.0) -> None:
        """Background reachability probes: every ``interval_s`` while up, backing off while down;
        a new endpoint (``set_cloud``) is probed at once."""
        schedule = ProbeSchedule(interval_s, max_backoff_s)
        self._reprobe = reprobe = asyncio.Event()
        while True:
            cloud, delay = self.cloud, interval_s
            reprobe.clear()
            if cloud is not None and hasattr(cloud, "probe"):
                reachable = await cloud.probe()
                if cloud is self.cloud:  # not replaced while the probe ran
                    self.cloud_reachable = reachable
                delay = schedule.next(reachable)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reprobe.wait(), delay)


class ProbeSchedule:
    """The delay before the next probe: ``interval_s`` while the cloud answers; while it is down,
    2 s doubling up to ``max_backoff_s``, so a device that lost its uplink neither hammers the
    network nor takes long to notice it is back."""

    def __init__(self, interval_s: float, max_backoff_s: float, first_backoff_s: float = 2.0):
        self.interval_s, self.max_backoff_s, self.first_backoff_s = interval_s, max_backoff_s, first_backoff_s
        self._backoff = first_backoff_s

    def next(self, reachable: bool) -> float:
        if reachable:
            self._backoff = self.first_backoff_s
            return self.interval_s
        delay, self._backoff = self._backoff, min(self.max_backoff_s, self._backoff * 2)
        return delay
