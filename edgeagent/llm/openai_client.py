"""OpenAI chat-completions streaming (SSE) over httpx: works with OpenAI, Inworld Router, Ollama,
llama.cpp server and vLLM.  Closing the iterator closes the HTTP stream at once.  With ``tools``
the model may answer with function calls instead of text: their streamed pieces are put together
and yielded as ``ToolCall``s when the stream ends.

The API key goes only to the origin it was provisioned for (``llm.cloud_api_key_origin``): a
client for any other endpoint, even an allowed one, sends no key.  Redirects are not followed.
Error messages are our own words; what the server said goes into ``LlmError.detail``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator

import httpx

from edgeagent.config import LlmConfig
from edgeagent.llm.base import LlmError, Message, ToolCall
from edgeagent.llm.endpoint import origin

log = logging.getLogger(__name__)


class OpenAiChat:
    name = "cloud"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout_s: float = 10.0,
                 max_tokens: int = 160, temperature: float = 0.6, name: str = "cloud", key_origin: str | None = None,
                 sampling: dict | None = None):
        """``key_origin``: where ``api_key`` may be sent (default: ``base_url``'s own origin). ``sampling``: more
        request fields this server understands (llama.cpp's ``repeat_penalty``)."""
        self.name = name
        self.sampling = sampling or {}
        self.base_url = base_url.rstrip("/")
        self.origin = origin(self.base_url)
        self.model = model
        self.max_tokens, self.temperature = max_tokens, temperature
        key_origin = self.origin if key_origin is None else key_origin
        if api_key and self.origin != key_origin:
            log.warning("%s LLM at %s: the API key is not sent there (it is provisioned for %s)", name, self.origin,
                        key_origin or "no endpoint")
            api_key = ""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)))

    @classmethod
    def from_config(cls, llm: LlmConfig) -> "OpenAiChat | None":
        """The configured cloud endpoint; None when there is none."""
        if not llm.cloud_base_url:
            return None
        return cls(llm.cloud_base_url, llm.cloud_model, llm.cloud_api_key, llm.request_timeout_s,
                   llm.max_tokens, llm.temperature, key_origin=llm.cloud_api_key_origin)

    async def stream(self, messages: list[Message], tools: list[dict[str, Any]] | None = None
                     ) -> AsyncIterator[str | ToolCall]:
        body = {"model": self.model, "messages": messages, "stream": True,
                "max_tokens": self.max_tokens, "temperature": self.temperature, **self.sampling}
        if tools:
            body["tools"] = tools
        calls: dict[int, dict[str, str]] = {}
        try:
            async with self.client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
                if response.status_code in (401, 403):
                    raise LlmError(f"{self.name} LLM rejected the API key ({response.status_code}): check llm.cloud_api_key")
                if response.status_code >= 400:
                    detail = (await response.aread()).decode(errors="replace")[:200]
                    raise LlmError(f"{self.name} LLM answered HTTP {response.status_code}", detail=detail)
                async for line in response.aiter_lines():
                    delta = parse_sse_line(line)
                    if delta is _END:
                        break
                    if delta.get("content"):
                        yield delta["content"]
                    for piece in delta.get("tool_calls") or ():
                        _add_tool_piece(calls, piece)
        except httpx.HTTPError as exc:
            raise LlmError(f"{self.name} LLM at {self.origin} unreachable: {type(exc).__name__}", detail=str(exc)) from None
        for index in sorted(calls):
            call = calls[index]
            yield ToolCall(call["id"] or f"call_{index}", call["name"], call["arguments"] or "{}")

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
    """One SSE line -> its delta (``{"content": ...}``, ``{"tool_calls": [...]}``, ``{}`` for nothing),
    or _END; malformed data raises LlmError."""
    line = line.strip()
    if not line or line.startswith(":") or not line.startswith("data:"):
        return {}
    data = line[5:].strip()
    if data == "[DONE]":
        return _END
    try:
        event = json.loads(data)
        if "error" in event:
            raise LlmError("cloud LLM stream error", detail=str(event["error"])[:300])
        choices = event.get("choices") or [{}]
        delta = choices[0].get("delta") or {}
        if not isinstance(delta, dict):
            raise TypeError("delta is not an object")
        return delta
    except (ValueError, AttributeError, TypeError, IndexError) as exc:
        raise LlmError(f"malformed SSE from cloud LLM ({type(exc).__name__})", detail=data[:120]) from None


def _add_tool_piece(calls: dict[int, dict[str, str]], piece: Any) -> None:
    """Tool calls arrive in pieces (id and name first, the arguments' JSON text in parts), by index."""
    if not isinstance(piece, dict):
        raise LlmError("malformed tool call from cloud LLM", detail=str(piece)[:120])
    call = calls.setdefault(int(piece.get("index", len(calls))), {"id": "", "name": "", "arguments": ""})
    function = piece.get("function") or {}
    call["id"] = piece.get("id") or call["id"]
    call["name"] = function.get("name") or call["name"]
    call["arguments"] += function.get("arguments") or ""
