"""The chat-backend contract: stream tokens for a list of OpenAI-style messages.

Cancelling the consuming task (or ``aclose()`` on the iterator) must stop generation at once:
the HTTP stream is closed, llama.cpp stops producing tokens.
"""

from __future__ import annotations

from typing import AsyncIterator, Protocol

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


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
