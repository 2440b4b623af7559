"""AIC: compression hints that fit the encoder's bitrate, resolution and frame rate to content and network.

Two pure cores, no I/O and no clock:

* :mod:`auralink.aic.features` measures frames: P.910 spatial and temporal information, motion and
  cuts, from downscaled luma with numpy.
* :mod:`auralink.aic.engine` turns those measures and the network statistics into a :class:`Hint`
  with a deadline, through a rate-quality model, and falls back to native encoder settings when a
  hint arrives late.

:mod:`auralink.aic.model` loads the rate-quality model trained on aiortc VP8 encodes and VMAF
(``rate_model.npz``, made by ``benchmarks/aic/train.py``); the engine falls back to the analytic
placeholder if the file cannot be used. :mod:`auralink.aic.controller` is the aiortc adapter: it
drives a live sender's VP8 encoder (bitrate and libvpx options) and track; it and
:mod:`auralink.aic.rtp` (hint marks in an RTP header extension) need aiortc (the ``calls`` extra),
so they are not imported here. :mod:`auralink.aic.remote` is the ``auralink/aic/1`` mesh protocol
(remote hints with a deadline and local fallback). :mod:`auralink.aic.effort` is a third pure core:
it picks libvpx's ``cpu-used`` from measured encode times (CPU headroom). :mod:`auralink.aic.errors`
holds the exception tree.

numpy is an optional dependency (the ``aic`` extra); importing this package without it says so.
"""

try:
    import numpy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("auralink.aic needs numpy; install it with: pip install 'auralink[aic]'") from exc

from auralink.aic.engine import (
    AnalyticRateModel,
    EncoderSettings,
    Hint,
    HintEngine,
    Mode,
    NetworkStats,
    RateQualityModel,
    usable_bandwidth,
)
from auralink.aic.errors import AICError, RateModelError, UnsupportedEncoder
from auralink.aic.features import FeatureExtractor, FrameStats, extract_features
from auralink.aic.model import TrainedRateModel, default_rate_model, load_rate_model

__all__ = [
    "AICError",
    "AnalyticRateModel",
    "EncoderSettings",
    "FeatureExtractor",
    "FrameStats",
    "Hint",
    "HintEngine",
    "Mode",
    "NetworkStats",
    "RateModelError",
    "RateQualityModel",
    "TrainedRateModel",
    "UnsupportedEncoder",
    "default_rate_model",
    "extract_features",
    "load_rate_model",
    "usable_bandwidth",
]
