"""Conversation memory: a spoken-style system prompt, bounded history, and only what was heard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgeagent.config import LlmConfig
from edgeagent.llm.base import Message

CHARS_PER_TOKEN = 4  # rough, but enough to keep a 2k-token context from overflowing


@dataclass
class Conversation:
    system_prompt: str
    max_turns: int = 6
    max_history_tokens: int = 1200
    turns: list[tuple[str, str]] = field(default_factory=list)  # (user, what the user heard)
    limits: str = ""  # appended to the system prompt: what the device can really do (static: cached)
    # a system note just before the user's words (the date and time): the part that changes goes last,
    # so the model's cached prefix (system prompt, history) stays valid from turn to turn
    note: Callable[[], str] = lambda: ""

    def configure(self, llm: LlmConfig) -> None:
        """Live config: prompt and history length from the next turn on."""
        self.system_prompt, self.max_turns = llm.system_prompt, llm.history_turns
        self._trim()

    def messages_for(self, user_text: str) -> list[Message]:
        messages: list[Message] = [{"role": "system", "content": self.system_prompt + self.limits}]
        for user, heard in self.turns:
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": heard})
        note = self.note()
        if note:
            messages.append({"role": "system", "content": note})
        messages.append({"role": "user", "content": user_text})
        return messages

    def record(self, user_text: str, heard_reply: str, interrupted: bool = False) -> None:
        """Keep the exchange as the user experienced it: a cut-off reply is stored cut off."""
        reply = heard_reply.strip()
        if interrupted:
            reply = (reply + " …") if reply else "(interrupted before answering)"
        self.turns.append((user_text, reply))
        self._trim()

    def _trim(self) -> None:
        while len(self.turns) > self.max_turns:
            self.turns.pop(0)
        while self.turns and sum(len(u) + len(h) for u, h in self.turns) / CHARS_PER_TOKEN > self.max_history_tokens:
            self.turns.pop(0)

    def clear(self) -> None:
        self.turns.clear()
