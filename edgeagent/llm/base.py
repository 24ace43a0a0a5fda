"""The chat-backend contract: stream tokens for a list of OpenAI-style messages.

Cancelling the consuming task (or ``aclose()`` on the iterator) must stop generation at once:
the HTTP stream is closed, llama.cpp stops producing tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Protocol

Message = dict[str, Any]  # {"role": "system"|"user"|"assistant"|"tool", "content": "...", "tool_calls"?: [...]}


@dataclass(frozen=True)
class ToolCall:
    """A function the model asked for (OpenAI ``tool_calls``): ``arguments`` is its JSON text."""

    id: str
    name: str
    arguments: str

    def message(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


class Tools(Protocol):
    """What the router offers a backend that can call functions, and how it runs a call."""

    schemas: list[dict[str, Any]]

    def call(self, call: ToolCall) -> Awaitable[tuple[str, Any]]:
        """(the result as text for the model, an event for the trace)."""
        ...


class LlmError(RuntimeError):
    """A backend failed (unreachable, HTTP error, malformed stream); the message says which in our
    own words, so it may go into telemetry.  ``detail`` is what the backend said (an error body, a
    stream's error event), which may quote the user: it is text, kept with the transcript."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


class ChatBackend(Protocol):
    name: str

    def stream(self, messages: list[Message]) -> AsyncIterator[str]:
        """Token texts as they are generated."""
        ...
