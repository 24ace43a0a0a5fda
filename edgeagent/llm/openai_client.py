"""OpenAI chat-completions streaming (SSE) over httpx: works with OpenAI, Inworld Router, Ollama,
llama.cpp server and vLLM.  Closing the iterator closes the HTTP stream at once."""

from __future__ import annotations

import json
from typing import AsyncIterator

import httpx

from edgeagent.config import LlmConfig
from edgeagent.llm.base import LlmError, Message


class OpenAiChat:
    name = "cloud"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout_s: float = 10.0,
                 max_tokens: int = 160, temperature: float = 0.6, name: str = "cloud", sampling: dict | None = None):
        """``sampling``: more request fields this server understands (llama.cpp's ``repeat_penalty``)."""
        self.name = name
        self.sampling = sampling or {}
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens, self.temperature = max_tokens, temperature
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)))

    @classmethod
    def from_config(cls, llm: LlmConfig) -> "OpenAiChat | None":
        """The configured cloud endpoint; None when there is none."""
        if not llm.cloud_base_url:
            return None
        return cls(llm.cloud_base_url, llm.cloud_model, llm.cloud_api_key, llm.request_timeout_s,
                   llm.max_tokens, llm.temperature)

    async def stream(self, messages: list[Message]) -> AsyncIterator[str]:
        body = {"model": self.model, "messages": messages, "stream": True,
                "max_tokens": self.max_tokens, "temperature": self.temperature, **self.sampling}
        try:
            async with self.client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
                if response.status_code in (401, 403):
                    raise LlmError(f"{self.name} LLM rejected the API key ({response.status_code}): check llm.cloud_api_key")
                if response.status_code >= 400:
                    detail = (await response.aread()).decode(errors="replace")[:200]
                    raise LlmError(f"{self.name} LLM answered HTTP {response.status_code}: {detail}")
                async for line in response.aiter_lines():
                    text = parse_sse_line(line)
                    if text is _END:
                        return
                    if text:
                        yield text
        except httpx.HTTPError as exc:
            raise LlmError(f"{self.name} LLM at {self.base_url} unreachable: {type(exc).__name__}: {exc}") from None

    async def probe(self, timeout_s: float = 2.0) -> bool:
        """Cheap reachability check (GET /models); used before the user speaks."""
        try:
            response = await self.client.get(f"{self.base_url}/models", timeout=timeout_s)
            return response.status_code < 500
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        await self.client.aclose()


_END = object()


def parse_sse_line(line: str):
    """One SSE line -> token text, "" (nothing to say), or _END; malformed data raises LlmError."""
    line = line.strip()
    if not line or line.startswith(":") or not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return _END
    try:
        event = json.loads(data)
        if "error" in event:
            raise LlmError(f"cloud LLM stream error: {event['error']}")
        choices = event.get("choices") or [{}]
        return choices[0].get("delta", {}).get("content") or ""
    except (ValueError, AttributeError, TypeError, IndexError) as exc:
        raise LlmError(f"malformed SSE from cloud LLM: {data[:120]!r} ({exc})") from None
