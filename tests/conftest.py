import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """Tests never pick up the developer's EDGEAGENT_* settings."""
    for name in list(os.environ):
        if name.startswith("EDGEAGENT_"):
            monkeypatch.delenv(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """A real OpenAI-compatible server on loopback (llama.cpp's), standing in for the cloud.
    Yields (process, base_url); tests may kill the process to simulate an outage."""
    port = free_port()
    model = REPO / "models/llm/SmolLM2-135M-Instruct.Q4_1.gguf"
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                                "--port", str(port), "--n_threads", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/models", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("llama_cpp.server did not start")
    # one tiny completion first: a cold server's first request pays its warm-up, which on a busy
    # 2-core machine can outlast a client timeout and turn "healthy cloud" into a failover
    warm = urllib.request.Request(base + "/chat/completions", method="POST", headers={"Content-Type": "application/json"},
                                  data=b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}')
    urllib.request.urlopen(warm, timeout=120).read()
    yield process, base
    process.kill()
    process.wait()
