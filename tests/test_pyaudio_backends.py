"""The real pyaudio backends, against PortAudio's ALSA 'default' device backed by files.

Each case runs in a subprocess because ALSA reads its configuration once per process.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("pyaudio")


def run_py(code: str, home) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        cwd=str(__import__("pathlib").Path(__file__).parent.parent),
    )


def test_no_device_is_a_clear_error(tmp_path):
    result = run_py("""
        from edgeagent.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker
        from edgeagent.audio import AudioError
        for cls in (PyAudioMicrophone, PyAudioSpeaker):
            try:
                cls()
            except AudioError as exc:
                print("ERR", exc)
    """, tmp_path)  # empty HOME: no .asoundrc, and this machine has no sound card
    lines = [l for l in result.stdout.splitlines() if l.startswith("ERR")]
    assert lines == ["ERR no audio input device found (PortAudio sees 0 devices in all)",
                     "ERR no audio output device found (PortAudio sees 0 devices in all)"], result.stderr[-2000:]


def test_microphone_and_speaker_through_portaudio(tmp_path, alsa_file_device):
    infile, outfile = alsa_file_device
    t = np.arange(16000) / 16000
    (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tofile(infile)
    result = run_py("""
        import asyncio, numpy as np
        from edgeagent.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker, list_devices

        async def main():
            print("DEVICES", [d.name for d in list_devices()])
            mic = PyAudioMicrophone("default", frame_ms=20)
            got = []
            async for frame in mic.frames():
                got.append(frame.samples)
                if len(got) == 25:
                    break
            await mic.close()
            audio = np.concatenate(got)
            spectrum = np.abs(np.fft.rfft(audio.astype(float)))
            print("MIC_HZ", round(np.argmax(spectrum) * 16000 / len(audio)), len(audio))
            speaker = PyAudioSpeaker("default", sample_rate=16000, input_rate=16000)
            tone = (np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000) * 8000).astype(np.int16)
            for i in range(0, 8000, 320):
                await speaker.write(tone[i:i + 320])
            while speaker.queued_samples:
                await asyncio.sleep(0.02)
            print("PLAYED", speaker.played_samples)
            await speaker.close()

        asyncio.run(main())
    """, tmp_path)
    out = result.stdout
    mic = [line.split() for line in out.splitlines() if line.startswith("MIC_HZ")]
    assert mic and abs(int(mic[0][1]) - 440) <= 15 and mic[0][2] == "8000", out + result.stderr[-2000:]
    assert "PLAYED 8000" in out
    played = np.fromfile(outfile, dtype="<i2")
    played = played[np.argmax(played != 0):]  # the device plays silence until the first write arrives
    assert len(played) >= 8000
    spectrum = np.abs(np.fft.rfft(played[:8000].astype(float)))
    assert round(np.argmax(spectrum) * 16000 / 8000) == 1000
