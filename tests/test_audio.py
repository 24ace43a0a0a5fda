import asyncio
import time

import numpy as np
import pytest
import soundfile

from edgeagent.audio import AudioError, Frame
from edgeagent.audio.convert import StreamResampler, resample, to_pipeline_format
from edgeagent.audio.ringbuffer import RingBuffer
from edgeagent.audio.wav import WavSink, WavSource, read_audio, split_frames


def tone(freq, rate, seconds=0.5, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float32)))
    return np.argmax(spectrum) * rate / len(samples)


@pytest.mark.parametrize(
    "subtype, rate, channels",
    [("PCM_16", 16000, 1), ("PCM_U8", 8000, 1), ("PCM_24", 48000, 2), ("PCM_32", 44100, 1), ("FLOAT", 22050, 2)],
)
def test_any_wav_is_converted_to_16k_mono_int16(tmp_path, subtype, rate, channels):
    signal = tone(1000, rate)
    data = np.stack([signal] * channels, axis=1) if channels > 1 else signal
    path = tmp_path / f"in_{subtype}.wav"
    soundfile.write(str(path), data, rate, subtype=subtype)
    out = read_audio(path)
    assert out.dtype == np.int16 and out.ndim == 1
    assert abs(len(out) - 8000) <= 2  # 0.5 s at 16 kHz
    assert abs(dominant_hz(out, 16000) - 1000) < 5  # pitch preserved through resampling
    assert 0.4 < np.abs(out).max() / 32767 < 0.6  # level preserved


def test_stereo_downmix_averages_channels():
    left = np.full(100, 0.5, np.float32)
    right = np.zeros(100, np.float32)
    out = to_pipeline_format(np.stack([left, right], axis=1), 16000, 16000)
    assert np.allclose(out, 0.25 * 32767, atol=2)


def test_corrupt_and_non_audio_files_are_clear_errors(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(AudioError, match="notes.wav: not a readable audio file"):
        read_audio(text)
    good = tmp_path / "good.wav"
    soundfile.write(str(good), tone(440, 16000), 16000, subtype="PCM_16")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError, match="truncated.wav"):
        read_audio(truncated)
    with pytest.raises(AudioError, match="no such audio file"):
        read_audio(tmp_path / "missing.wav")


def test_stream_resampler_matches_whole_buffer_length():
    signal = (tone(440, 22050, 1.0) * 32767).astype(np.int16)
    stream = StreamResampler(22050, 16000)
    pieces = [stream.process(signal[i : i + 441]) for i in range(0, len(signal), 441)]
    pieces.append(stream.process(np.zeros(0, np.int16), last=True))
    out = np.concatenate(pieces)
    assert abs(len(out) - 16000) <= 2
    assert abs(dominant_hz(out, 16000) - 440) < 3
    assert len(resample(signal, 22050, 16000)) == pytest.approx(16000, abs=2)


def test_ring_buffer_keeps_newest_samples_in_order():
    ring = RingBuffer(5)
    assert len(ring.latest()) == 0
    ring.write(np.array([1, 2, 3], np.int16))
    assert ring.latest().tolist() == [1, 2, 3]
    ring.write(np.array([4, 5, 6, 7], np.int16))
    assert ring.latest().tolist() == [3, 4, 5, 6, 7]
    assert ring.latest(2).tolist() == [6, 7]
    ring.write(np.arange(100, 112, dtype=np.int16))  # more than capacity at once
    assert ring.latest().tolist() == [107, 108, 109, 110, 111]
    ring.clear()
    assert len(ring) == 0


def test_split_frames_pads_last_frame():
    frames = split_frames(np.ones(650, np.int16), 20)
    assert len(frames) == 3 and all(len(f) == 320 for f in frames)
    assert frames[-1][10:].sum() == 0 and frames[-1][:10].sum() == 10


def write_tone(path, seconds):
    soundfile.write(str(path), tone(300, 16000, seconds), 16000, subtype="PCM_16")
    return path


async def collect(source):
    return [frame async for frame in source.frames()]


def test_wav_source_fast_and_realtime(tmp_path):
    path = write_tone(tmp_path / "t.wav", 0.5)
    started = time.monotonic()
    frames = asyncio.run(collect(WavSource(path, frame_ms=10)))
    fast = time.monotonic() - started
    assert len(frames) == 50 and all(isinstance(f, Frame) for f in frames)
    assert [f.index for f in frames] == list(range(50))
    assert frames[10].audio_s == pytest.approx(0.1)
    started = time.monotonic()
    paced = asyncio.run(collect(WavSource(path, frame_ms=20, realtime=True)))
    assert len(paced) == 25
    assert time.monotonic() - started >= 0.45  # paced like a microphone
    assert fast < 0.4
    # arrival times grow by one frame each when paced
    assert paced[-1].t - paced[0].t == pytest.approx(0.48, abs=0.08)


def test_wav_source_tail_silence(tmp_path):
    source = WavSource(write_tone(tmp_path / "t.wav", 0.2), frame_ms=20, tail_silence_ms=600)
    frames = asyncio.run(collect(source))
    assert len(frames) == 40 and not frames[-1].samples.any()


def test_wav_sink_writes_resampled_audio(tmp_path):
    out = tmp_path / "out.wav"

    async def main():
        sink = WavSink(out, sample_rate=16000, input_rate=22050)
        signal = (tone(500, 22050, 1.0) * 32767).astype(np.int16)
        for i in range(0, len(signal), 2205):
            await sink.write(signal[i : i + 2205])
        await sink.close()

    asyncio.run(main())
    data, rate = soundfile.read(str(out), dtype="int16")
    assert rate == 16000 and abs(len(data) - 16000) < 40
    assert abs(dominant_hz(data, 16000) - 500) < 3
