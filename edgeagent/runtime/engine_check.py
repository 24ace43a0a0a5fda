"""Run one native engine once, in a process of its own, for ``edgeagent doctor``.

A file check says a model is there; only running it says the engine works on this CPU.  Run
here, a segfault or an illegal instruction ends this process, and the doctor reports it as a
failed check naming the engine and what to do, instead of crashing itself.

    python -m edgeagent.runtime.engine_check --config FILE FAMILY     (wake | vad | stt | tts | aec | llm)

Prints ``{"family": ..., "engine": ..., "ms": ...}`` on success.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from edgeagent.config import Config, load_config

FAMILIES = ("wake", "vad", "stt", "tts", "aec", "llm")


def run_aec(_config: Config) -> str:
    from edgeagent.audio.echo import WebRtcEchoCanceller

    frame = (np.sin(np.arange(320) / 5.0) * 3000).astype(np.int16)
    WebRtcEchoCanceller().process(frame, frame)
    return "webrtc"


def run_llm(config: Config) -> str:
    """Load the packaged model in llama.cpp here and generate one token."""
    import urllib.request
    from pathlib import Path

    from edgeagent.llm.server import parse_args, serve
    from edgeagent.modelstore import model_path

    path = Path(config.llm.local_model_path) if config.llm.local_model_path else \
        model_path("llm/smollm2-135m-instruct-q4_1", config.models_dir)
    server = serve(parse_args(["--model", str(path), "--threads", "1"]))
    request = urllib.request.Request(f"{server.listening_address}/v1/chat/completions", method="POST",
                                     headers={"Content-Type": "application/json"},
                                     data=b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}')
    urllib.request.urlopen(request, timeout=300).read()
    return path.name


def run_family(config: Config, family: str) -> str:
    from edgeagent.runtime.engine_guard import BUILDERS, configured_engine, inject_fault

    inject_fault(family, configured_engine(config, family) if family in BUILDERS else family)
    if family == "aec":
        return run_aec(config)
    if family == "llm":
        return run_llm(config)
    BUILDERS[family](config)
    return configured_engine(config, family)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeagent.runtime.engine_check")
    parser.add_argument("--config")
    parser.add_argument("family", choices=FAMILIES)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    started = time.monotonic()
    try:
        engine = run_family(config, args.family)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"family": args.family, "engine": engine, "ms": round((time.monotonic() - started) * 1000)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
