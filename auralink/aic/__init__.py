"""AIC: compression hints that fit the encoder's bitrate, resolution and frame rate to content and network.

Two pure cores, no I/O and no clock:

* :mod:`auralink.aic.features` measures frames: P.910 spatial and temporal information, motion and
  cuts, from downscaled luma with numpy.
* :mod:`auralink.aic.engine` turns those measures and the network statistics into a :class:`Hint`
  with a deadline, through a rate-quality model (for now a documented analytic placeholder), and
  falls back to native encoder settings when a hint arrives late.

The aiortc adapter, the trained model and the evaluation harness of issue 6 are not here yet.
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
from auralink.aic.features import FeatureExtractor, FrameStats, extract_features

__all__ = [
    "AnalyticRateModel",
    "EncoderSettings",
    "FeatureExtractor",
    "FrameStats",
    "Hint",
    "HintEngine",
    "Mode",
    "NetworkStats",
    "RateQualityModel",
    "extract_features",
    "usable_bandwidth",
]
