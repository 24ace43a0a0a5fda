"""The embedded LLM's own process: llama.cpp's OpenAI-compatible server (xllamacpp) on loopback.

Why a process of its own: llama.cpp is native code with CPU-specific kernels, and a crash in it
(a kernel the CPU mishandles, a corrupt model) must end this process, never the daemon; the
daemon's ``LlmWorker`` restarts it.  Talking HTTP to it also makes the local model one more
OpenAI-style backend, so barge-in closes its stream the same way as the cloud's (llama.cpp stops
generating at the next token when the client goes away) and the server keeps the prompt's KV
prefix between requests.

    python -m edgeagent.llm.server --model M.gguf [--threads N] [--context 2048] [--port 0]

Prints one JSON line on stdout once it answers (``{"address": "http://127.0.0.1:PORT", "load_s": 0.4}``)
and runs until its stdin closes (the parent is gone) or SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import time


GGML_TYPE_Q8_0 = 8


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the daemon dies, however it dies (Linux prctl)."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the stdin EOF below still ends us


def default_threads() -> int:
    """One per core minus one, leaving a core to audio, STT and TTS."""
    return max(1, (os.cpu_count() or 2) - 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeagent.llm.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--threads", type=int, default=0, help="0: one per core minus one")
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (the address line says which)")
    return parser.parse_args(argv)


def serve(args: argparse.Namespace):
    """Load the model and start answering; returns the server (it serves until it is dropped)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.context
    params.n_parallel = 1  # one conversation: one slot, whose KV cache keeps the prompt prefix
    params.cache_prompt = True
    # no host-RAM copies of earlier prompts (llama.cpp keeps up to 8 GiB of them by default, ~1 MiB a
    # turn here): the one slot's KV cache already holds the system prompt and the conversation
    params.cache_ram_mib = 0
    params.flash_attn_type = 1  # needed for a quantized V cache
    params.cache_type_k = params.cache_type_v = GGML_TYPE_Q8_0  # half the KV cache's memory (-20 MiB)
    params.endpoint_metrics = True  # tokens generated, for tests and benchmarks
    params.hostnames = [args.host]
    params.port = args.port
    threads = args.threads or default_threads()
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 0
    return xllamacpp.Server(params)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _die_with_parent()
    if not os.path.isfile(args.model):
        print(f"edgeagent.llm.server: model {args.model} not found", file=sys.stderr)
        return 2
    start = time.monotonic()
    server = serve(args)
    print(json.dumps({"address": server.listening_address, "load_s": round(time.monotonic() - start, 3),
                      "pid": os.getpid()}), flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or is gone)
    except KeyboardInterrupt:
        pass
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
