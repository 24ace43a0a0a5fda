"""A microphone that is missing (unplugged) is reported and retried until it appears, through
real PortAudio (ALSA file-plugin device, in a subprocess: ALSA reads its config once)."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytest.importorskip("pyaudio")


def test_missing_microphone_is_reported_retried_and_resumed(tmp_path, alsa_file_device):
    infile, _ = alsa_file_device
    script = textwrap.dedent(f"""
        import asyncio, threading, numpy as np
        from edgeagent.audio.pyaudio_io import PyAudioMicrophone
        from edgeagent.audio.resilient import ResilientSource

        def plug_in():  # the device's audio appears 1.5 s later
            (np.sin(np.arange(32000) * 2 * np.pi * 440 / 16000) * 5000).astype('<i2').tofile({str(infile)!r})

        threading.Timer(1.5, plug_in).start()

        async def main():
            source = ResilientSource(lambda: PyAudioMicrophone("default", 20, stall_s=0.5),
                                     on_status=lambda s: print("STATUS", s.detail, flush=True), first_backoff_s=0.2)
            got = []
            async for frame in source.frames():
                got.append(frame)
                if len(got) == 25:
                    break
            await source.close()
            audio = np.concatenate([f.samples for f in got])
            hz = np.argmax(np.abs(np.fft.rfft(audio.astype(float)))) * 16000 / len(audio)
            print("FRAMES", len(got), [f.index for f in got][:3], round(hz))

        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    lines = [l for l in result.stdout.splitlines() if l.startswith(("STATUS", "FRAMES"))]
    lost = [l for l in lines if l.startswith("STATUS audio device lost")]
    assert len(lost) >= 2, result.stdout + result.stderr[-1500:]  # reported, and retried with back-off
    assert lines[len(lost)] == "STATUS audio ok"
    assert lines[-1] == "FRAMES 25 [0, 1, 2] 440"  # resumed: the device's real audio, one frame clock
