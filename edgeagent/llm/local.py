"""The embedded model: llama.cpp (llama-cpp-python) in-process, tokens streamed from a worker thread.

The model is loaded once; generation runs on its own thread and checks a stop flag per token,
so closing the stream (barge-in) stops llama.cpp within one token.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import AsyncIterator

from edgeagent.llm.base import LlmError, Message

_DONE = object()


class LocalLlama:
    name = "local"

    def __init__(self, model_path: Path, max_tokens: int = 160, temperature: float = 0.6, context: int = 2048,
                 threads: int = 0):
        if not model_path.is_file():
            raise LlmError(f"local model {model_path} not found (run `edgeagent models install`)")
        from llama_cpp import Llama

        try:
            # llama.cpp threads spin while they wait: one per core *minus one* leaves a core for audio,
            # STT and TTS; all cores made generation ~10x slower here whenever anything else ran.
            threads = threads or max(1, (os.cpu_count() or 2) - 1)
            self.llama = Llama(model_path=str(model_path), n_ctx=context, n_threads=threads,
                               n_threads_batch=threads, verbose=False)
        except ValueError as exc:
            raise LlmError(f"local model {model_path} cannot be loaded: {exc}") from None
        self.max_tokens, self.temperature = max_tokens, temperature
        self._lock = threading.Lock()  # one generation at a time on the one model
        self.active_threads = 0
        self.llama.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=1)  # warm-up

    async def stream(self, messages: list[Message]) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def put(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # loop closed under us (shutdown)
                stop.set()

        def generate() -> None:
            self.active_threads += 1
            try:
                with self._lock:
                    for part in self.llama.create_chat_completion(
                        messages=messages, stream=True, max_tokens=self.max_tokens, temperature=self.temperature,
                    ):
                        if stop.is_set():
                            break
                        text = part["choices"][0]["delta"].get("content")
                        if text:
                            put(text)
            except Exception as exc:  # surfaced to the consumer as an LlmError
                put(LlmError(f"local model failed: {exc}"))
            finally:
                self.active_threads -= 1
                put(_DONE)

        thread = threading.Thread(target=generate, name="llm-local", daemon=True)
        thread.start()
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, LlmError):
                    raise item
                yield item
        finally:
            stop.set()  # consumer gone (done, cancelled or closed): generation stops at the next token
