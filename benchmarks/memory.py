"""RSS per model: ``python -m benchmarks.memory`` prints one JSON line {model: MiB}.

Each model is loaded in a fresh process and run once (as at start-up, plus a decode or an answer),
and the RSS it added over that process's baseline (python, numpy, edgeagent) is its entry; the
libraries it brings (onnxruntime, CTranslate2) count with it.  The embedded LLM runs in a process
of its own: that process's RSS after one answer.  "daemon" is all of them loaded together
(``load_engines``, shared libraries counted once), "daemon + llm process" what a device needs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import psutil

MODELS = ["wake", "vad", "silero (barge-in)", "stt", "tts", "end of turn", "echo canceller", "llm process", "daemon"]


def _rss() -> float:
    return psutil.Process().memory_info().rss / 2**20


def load(name: str) -> float:
    """Load ``name`` in this process; the MiB it added (the LLM: its own process's RSS)."""
    from edgeagent.config import load_config
    from edgeagent.modelstore import model_path
    from edgeagent.runtime import engine_guard as guard

    config = load_config(env={})
    base = _rss()
    if name == "wake":
        guard.build_wake(config)
    elif name == "vad":
        guard.build_voice_activity(config)
    elif name == "silero (barge-in)":
        from edgeagent.ear.vad import SileroActivity

        SileroActivity(model_path("silero-vad", config.models_dir))
    elif name == "stt":
        recognizer = guard.build_recognizer(config)
        recognizer.transcribe(np.random.default_rng(0).normal(0, 2000, 16000 * 4).astype(np.int16))
    elif name == "tts":
        guard.build_synthesizer(config)
    elif name == "end of turn":
        from edgeagent.ear.turn_model import create_turn_model

        model = create_turn_model(config)
        model.probability(np.random.default_rng(0).normal(0, 2000, 16000 * 4).astype(np.int16))
    elif name == "echo canceller":
        from edgeagent.audio.echo import create_echo_canceller

        create_echo_canceller(True)
    elif name == "llm process":
        from edgeagent.llm.local import LocalLlm

        llm = LocalLlm(model_path("llm/smollm2-135m-instruct-q4_1", config.models_dir), max_tokens=32,
                       system_prompt=config.llm.system_prompt)

        async def ask() -> None:
            async for _ in llm.stream([{"role": "user", "content": "Tell me about cats."}]):
                pass

        asyncio.run(ask())
        own = psutil.Process(llm.worker.pid).memory_info().rss / 2**20
        llm.close()
        return own
    elif name == "daemon":
        from edgeagent.runtime.stages import load_engines

        config.llm.local_enabled = False  # the LLM process is its own entry
        engines = load_engines(config)
        engines.recognizer.transcribe(np.random.default_rng(0).normal(0, 2000, 16000 * 4).astype(np.int16))
        used = _rss()
        engines.close()
        return used
    return _rss() - base


def main(argv: list[str]) -> int:
    if argv:
        print(json.dumps({argv[0]: round(load(argv[0]), 1)}))
        return 0
    usage: dict[str, float] = {}
    for name in MODELS:
        out = subprocess.run([sys.executable, "-m", "benchmarks.memory", name], capture_output=True, text=True,
                             timeout=600)
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines:  # a model this version of edgeagent does not have is left out
            usage.update(json.loads(lines[-1]))
    usage["daemon + llm process"] = round(usage["daemon"] + usage["llm process"], 1)
    print(json.dumps(usage))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
