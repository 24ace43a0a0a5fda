"""Sample-format, channel and rate conversion into the pipeline's int16 / mono / 16 kHz.

Resampling uses libsoxr (``soxr``): high quality, streaming-capable and shipped as wheels for
x86-64 and aarch64, so we do not write our own filter.
"""

from __future__ import annotations

import numpy as np
import soxr

from edgeagent.audio.base import AudioError


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Any integer or float PCM array -> float32 in [-1, 1]."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype == np.uint8:  # 8-bit WAV is unsigned
        return (samples.astype(np.float32) - 128.0) / 128.0
    if samples.dtype.kind in "iu":
        scale = float(2 ** (8 * samples.dtype.itemsize - 1))
        return samples.astype(np.float32) / scale
    raise AudioError(f"unsupported sample type {samples.dtype}")


def to_int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples
    floats = to_float32(samples)
    return np.clip(np.round(floats * 32767.0), -32768, 32767).astype(np.int16)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array; 1-D input is already mono."""
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"expected (frames, channels) audio, got shape {samples.shape}")
    if samples.shape[1] == 1:
        return samples[:, 0]
    return to_float32(samples).mean(axis=1)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Whole-buffer resampling, keeping the dtype (int16 in, int16 out)."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples
    if src_rate <= 0 or dst_rate <= 0:
        raise AudioError(f"invalid sample rate {src_rate} -> {dst_rate}")
    return soxr.resample(samples, src_rate, dst_rate)


def to_pipeline_format(samples: np.ndarray, rate: int, dst_rate: int) -> np.ndarray:
    """Any PCM (any width, float or int, any channel count, any rate) -> int16 mono ``dst_rate``."""
    mono = to_float32(to_mono(samples))
    return to_int16(resample(mono, rate, dst_rate))


class StreamResampler:
    """Chunk-by-chunk resampling with filter state carried across chunks (no edge clicks)."""

    def __init__(self, src_rate: int, dst_rate: int):
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._stream = None if src_rate == dst_rate else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="int16")

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk.astype(np.int16, copy=False), last=last)
