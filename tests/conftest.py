import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from benchmarks.broker import Broker, free_port

__all__ = ["free_port"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """Tests never pick up the developer's EDGEAGENT_* settings."""
    for name in list(os.environ):
        if name.startswith("EDGEAGENT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def alsa_file_device(tmp_path, monkeypatch):
    """A PortAudio 'default' device backed by raw files (ALSA file plugin): lets tests run the
    real pyaudio backends on a machine without a sound card.  Returns (infile, outfile)."""
    infile, outfile = tmp_path / "mic.raw", tmp_path / "speaker.raw"
    (tmp_path / ".asoundrc").write_text(f"""
pcm.!default {{ type asym playback.pcm "ea_out" capture.pcm "ea_in" }}
pcm.ea_out {{ type file slave.pcm "null" file "{outfile}" format "raw" }}
pcm.ea_in {{ type file slave.pcm "null" file "/dev/null" infile "{infile}" format "raw" }}
""")
    monkeypatch.setenv("HOME", str(tmp_path))
    return infile, outfile


@pytest.fixture
def llama_server():
    """A real OpenAI-compatible server on loopback (llama.cpp's, the embedded model's own process),
    standing in for the cloud.  Yields (process, base_url); tests may kill the process to simulate an outage."""
    model = REPO / "models/llm/SmolLM2-135M-Instruct.Q4_1.gguf"
    process = subprocess.Popen([sys.executable, "-m", "edgeagent.llm.server", "--model", str(model), "--threads", "1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = process.stdout.readline()
    if not line:
        process.kill()
        pytest.fail("edgeagent.llm.server did not start")
    base = json.loads(line)["address"] + "/v1"
    # one tiny completion first: a cold server's first request pays its warm-up, which on a busy
    # 2-core machine can outlast a client timeout and turn "healthy cloud" into a failover
    warm = urllib.request.Request(base + "/chat/completions", method="POST", headers={"Content-Type": "application/json"},
                                  data=b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}')
    urllib.request.urlopen(warm, timeout=120).read()
    yield process, base
    process.kill()
    process.wait()


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto with the repo's ACL on a free loopback port (benchmarks.broker)."""
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()
