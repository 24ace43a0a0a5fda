import os
import shutil
import socket
import subprocess
import time
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
