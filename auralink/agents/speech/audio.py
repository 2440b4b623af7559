"""PCM audio and WAV files, without I/O: the one audio value the local speech engines take and give.

Theory of operation
===================

The offline engines speak 16-bit signed little-endian PCM, one channel: pocketsphinx decodes it,
Piper and espeak-ng produce it. :class:`PcmAudio` is that value (the samples and their rate), and
two functions convert it to and from the WAV files the provider protocols carry:

* :func:`read_wav` parses a RIFF/WAVE file. It accepts integer PCM (format tag 1, or
  ``WAVE_FORMAT_EXTENSIBLE`` whose sub-format is PCM) of 16 bits, and IEEE float (format tag 3,
  or extensible float) of 32 bits, at any rate and channel count. Channels are averaged to mono;
  floats are clipped to [-1, 1] and scaled to 16 bits. Streaming writers (espeak-ng's
  ``--stdout``, a live recorder) leave the RIFF and ``data`` sizes at 0 or ``0xFFFFFFFF``, or at a
  guess beyond the end: the data then runs to the end of the buffer, as in
  :func:`auralink.agents.providers.wire.wav_info`.
* :func:`write_wav` writes the canonical 44-byte header and the samples.

The rule of the codecs (h11's): any bytes either parse or raise
:class:`~auralink.errors.UnsupportedAudio`, never ``struct.error`` or ``IndexError``. The error is
a :class:`~auralink.errors.ProviderRejected`, so a router that meets audio the local engine cannot
read moves on to the next provider of the chain. Only the standard library is used: channel
mixing goes through :mod:`array`, which is fast enough for the seconds-long utterances of
speech recognition.
"""

from __future__ import annotations

import array
import math
import struct
import sys
from dataclasses import dataclass, field

from auralink.errors import UnsupportedAudio

__all__ = ["WAV_CONTENT_TYPES", "PcmAudio", "read_wav", "write_wav"]

WAV_CONTENT_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})
"""The media types under which a WAV file travels; parameters (``;codecs=1``) are ignored."""

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_MAX_CHANNELS = 32


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """Mono 16-bit signed little-endian PCM."""

    samples: bytes = field(repr=False)
    """The samples, two bytes each, little-endian."""
    sample_rate: int
    """Samples per second."""

    def __post_init__(self) -> None:
        if len(self.samples) % 2:
            raise UnsupportedAudio("16-bit PCM has an even number of bytes")
        if self.sample_rate <= 0:
            raise UnsupportedAudio(f"a sample rate is positive, not {self.sample_rate}")

    @property
    def frames(self) -> int:
        """The number of samples."""
        return len(self.samples) // 2

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.frames / self.sample_rate

    def __repr__(self) -> str:
        return f"PcmAudio({self.duration:.2f} s at {self.sample_rate} Hz)"


def _int16(values: array.array[int]) -> bytes:
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        values.byteswap()
    return values.tobytes()


def _mix_pcm16(data: bytes, channels: int) -> bytes:
    if channels == 1:
        return data
    samples = array.array("h")
    samples.frombytes(data[: len(data) - len(data) % (2 * channels)])
    if sys.byteorder != "little":  # pragma: no cover
        samples.byteswap()
    lanes = [samples[c::channels] for c in range(channels)]
    return _int16(array.array("h", (sum(frame) // channels for frame in zip(*lanes, strict=True))))


def _mix_float32(data: bytes, channels: int) -> bytes:
    samples = array.array("f")
    samples.frombytes(data[: len(data) - len(data) % (4 * channels)])
    if sys.byteorder != "little":  # pragma: no cover
        samples.byteswap()
    lanes = [samples[c::channels] for c in range(channels)]
    out = array.array("h")
    for frame in zip(*lanes, strict=True):
        value = sum(frame) / channels
        if math.isnan(value):
            value = 0.0
        out.append(int(max(-1.0, min(1.0, value)) * 32767))
    return _int16(out)


def read_wav(data: bytes) -> PcmAudio:
    """Parse a WAV file into mono 16-bit PCM; :class:`~auralink.errors.UnsupportedAudio` if it cannot."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise UnsupportedAudio("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        chunk = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise UnsupportedAudio("the WAV fmt chunk is truncated")
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE:
                if size < 40 or body + 40 > len(data):
                    raise UnsupportedAudio("the WAVE_FORMAT_EXTENSIBLE fmt chunk is truncated")
                (tag,) = struct.unpack_from("<H", data, body + 24)  # the sub-format GUID's first two bytes
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                raise UnsupportedAudio("the WAV data chunk comes before its fmt chunk")
            available = len(data) - body
            length = available if size in _UNKNOWN_SIZES or size > available else size
            return _decode(data[body : body + length], *fmt)
        if size == 0xFFFFFFFF:  # a streamed chunk other than data: nothing after it can be found
            break
        pos = body + size + (size & 1)
    raise UnsupportedAudio("the WAV file has no data chunk")


def _decode(payload: bytes, tag: int, channels: int, rate: int, bits: int) -> PcmAudio:
    if not 1 <= channels <= _MAX_CHANNELS:
        raise UnsupportedAudio(f"a WAV file with {channels} channels")
    if rate <= 0:
        raise UnsupportedAudio(f"a WAV file with a sample rate of {rate} Hz")
    if tag == _PCM and bits == 16:
        return PcmAudio(_mix_pcm16(payload, channels), rate)
    if tag == _FLOAT and bits == 32:
        return PcmAudio(_mix_float32(payload, channels), rate)
    kind = {_PCM: "integer PCM", _FLOAT: "float"}.get(tag, f"format tag {tag:#06x}")
    raise UnsupportedAudio(f"{bits}-bit {kind} WAV; the local engines read 16-bit PCM or 32-bit float")


def write_wav(audio: PcmAudio) -> bytes:
    """A canonical WAV file (44-byte header, 16-bit PCM, one channel) holding ``audio``."""
    size = len(audio.samples)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + size,
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        1,
        audio.sample_rate,
        audio.sample_rate * 2,
        2,
        16,
        b"data",
        size,
    )
    return header + audio.samples
