"""The Speaker on the real PortAudio backend (an ALSA file device stands in for a sound card)."""

import asyncio

import numpy as np
import pytest

from edgeagent.config import load_config
from edgeagent.audio.output import open_audio_out
from edgeagent.events import FirstAudio
from edgeagent.audio.playout import Speaker
from tests.tts_helpers import EventLog, synthesizer

pytest.importorskip("pyaudio")


def test_cancel_on_the_device_drops_queued_audio(alsa_file_device):
    _, outfile = alsa_file_device
    config = load_config(env={})
    sink = open_audio_out(config)
    speaker = Speaker(synthesizer("espeak"), sink, realtime=True)

    async def scenario():
        events = EventLog()

        async def sentence():
            yield "This sentence is long enough to be interrupted in the middle of it."

        task = asyncio.create_task(speaker.speak(sentence(), emit=events))
        await events.until(FirstAudio)
        await asyncio.sleep(0.8)
        speaker.cancel()
        finished = await task
        queued_after = sink.queued_samples
        await asyncio.sleep(0.3)
        await sink.close()
        return finished, queued_after

    finished, queued_after = asyncio.run(scenario())
    assert finished.cancelled and 0.6 < finished.played_ms / 1000 < 1.0
    assert queued_after <= int(0.005 * sink.sample_rate) + 1  # only the fade is left
    played = np.fromfile(outfile, dtype="<i2") if outfile.exists() else np.zeros(0)
    heard_s = np.count_nonzero(played) / sink.sample_rate  # the file device pads with silence, unpaced
    assert 0.4 < heard_s < 1.1  # the ~3.5 s sentence did not reach the device
