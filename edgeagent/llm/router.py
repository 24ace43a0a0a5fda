"""Chooses the backend per turn (cloud when reachable and healthy, else local) and fails over
mid-turn: a cloud stream that errors or misses its first-token deadline is replaced by the
local model in the same turn.  A cloud backend is offered the device's skills as function tools;
the router runs the calls it asks for (``Tools.call``), reports each (an ActionDone event for the
trace) and asks again with the results, so the answer it finally speaks is about what was done.
Reachability is known before the user speaks (background
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

from edgeagent.config import LlmConfig
from edgeagent.events import LlmRouted, LlmToken
from edgeagent.llm.base import ChatBackend, LlmError, Message, ToolCall, Tools
from edgeagent.llm.openai_client import OpenAiChat

log = logging.getLogger("edgeagent.llm")

MAX_TOOL_ROUNDS = 3  # model -> tools -> model ...: a model that keeps calling tools is stopped here
CLOUD_FIELDS = ("cloud_base_url", "cloud_model", "cloud_api_key", "request_timeout_s", "max_tokens", "temperature")


def cloud_settings(llm: LlmConfig) -> tuple:
    """What the cloud client is made from: a change to any of them needs a new client."""
    return tuple(getattr(llm, name) for name in CLOUD_FIELDS)


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
class LlmRouter:
    local: ChatBackend | None
    cloud: ChatBackend | None = None
    first_token_deadline_s: float = 1.5
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    cloud_reachable: bool | None = None  # None: not probed yet
    cloud_settings: tuple = ()  # the LlmConfig values the cloud client was made from
    _reprobe: asyncio.Event | None = field(default=None, repr=False)  # made by probe_forever, in its loop

    def set_cloud(self, cloud: ChatBackend | None, settings: tuple = ()) -> None:
        """A new cloud endpoint (live fleet config): unknown reachability, closed circuit, probed now."""
        self.cloud, self.cloud_reachable, self.cloud_settings = cloud, None, settings
        self.breaker.record_success()
        if self._reprobe is not None:
            self._reprobe.set()

    async def configure(self, llm: LlmConfig) -> None:
        """Live config: deadline and generation limits now; a changed cloud endpoint gets a new client."""
        self.first_token_deadline_s = llm.first_token_deadline_s
        if self.local is not None:
            self.local.configure(llm)
        if self.cloud_settings != cloud_settings(llm):
            previous = self.cloud
            self.set_cloud(OpenAiChat.from_config(llm), cloud_settings(llm))
            log.info("LLM cloud endpoint now %s", llm.cloud_base_url or "none (local only)")
            if previous is not None:
                await previous.close()

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

    async def stream(self, messages: list[Message], tools: Tools | None = None) -> AsyncIterator[LlmRouted | LlmToken]:
        """This turn's answer: an ``LlmRouted`` saying who answers and why (a second one after a
        failover), then the tokens (and, when the cloud called tools, the tools' events).  Closing
        the stream closes the backend's stream."""
        backend, reason = self.choose()
        yield LlmRouted(t=time.monotonic(), backend=backend.name, reason=reason)
        if backend is self.cloud:
            produced = 0
            try:
                async with contextlib.aclosing(self._cloud_rounds(backend, messages, tools)) as items:
                    async for item in items:
                        if isinstance(item, str):
                            produced += 1
                            yield LlmToken(t=time.monotonic(), text=item, backend=backend.name)
                        else:
                            yield item  # a tool's event
                self.breaker.record_success()
                self.cloud_reachable = True
                return
            except (LlmError, TimeoutError) as exc:
                self.breaker.record_failure(time.monotonic())
                why = "missed first-token deadline" if isinstance(exc, TimeoutError) else str(exc)
                detail = getattr(exc, "detail", None)  # the server's words may quote the user: debug only
                log.warning("cloud LLM failed (%s); continuing on the local model", why)
                log.debug("cloud LLM said: %s", detail)
                local = self._local()
                yield LlmRouted(t=time.monotonic(), backend=local.name, detail=detail,
                                reason=f"failover: cloud {why}" + (f" after {produced} tokens" if produced else ""))
        backend = self._local()
        async with contextlib.aclosing(backend.stream(messages)) as tokens:
            async for text in tokens:
                yield LlmToken(t=time.monotonic(), text=text, backend=backend.name)

    async def _cloud_rounds(self, backend: ChatBackend, messages: list[Message], tools: Tools | None):
        """Text from the cloud; tool calls run and answered, then the model asked again."""
        for _ in range(MAX_TOOL_ROUNDS):
            calls: list[ToolCall] = []
            stream = backend.stream(messages, tools=tools.schemas) if tools else backend.stream(messages)
            async with contextlib.aclosing(self._with_deadline(stream)) as items:
                async for item in items:
                    if isinstance(item, ToolCall):
                        calls.append(item)
                    else:
                        yield item
            if not calls or tools is None:
                return
            results = []
            for call in calls:
                result, event = await tools.call(call)
                results.append({"role": "tool", "tool_call_id": call.id, "content": result})
                yield event
            messages = [*messages, {"role": "assistant", "content": None, "tool_calls": [c.message() for c in calls]},
                        *results]
        log.warning("cloud LLM still calling tools after %d rounds; its answer ends here", MAX_TOOL_ROUNDS)

    async def _with_deadline(self, tokens: AsyncIterator[str]) -> AsyncIterator[str]:
        """Raises TimeoutError (and closes the stream) if the first token is later than the deadline."""
        iterator = aiter(tokens)
        try:
            first = await asyncio.wait_for(anext(iterator), timeout=self.first_token_deadline_s)
        except StopAsyncIteration:
            return
        except BaseException:
            await iterator.aclose()
            raise
        yield first
        async with contextlib.aclosing(iterator):
            async for token in iterator:
                yield token

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
