"""The exceptions of :mod:`auralink.aic`, rooted in :class:`~auralink.errors.AuralinkError`.

```text
AuralinkError
└── AICError                  AIC could not do what was asked
    ├── RateModelError        the trained rate-quality model file is missing, corrupt or of another format
    └── UnsupportedEncoder    the sender's encoder is not one AIC can drive (only aiortc's VP8 today)
```

Bad *inputs* (NaN statistics, zero-size frames, bad settings) raise
:class:`~auralink.errors.LocalProtocolError`, as in the cores; these are for the model file and the
aiortc seam.
"""

from __future__ import annotations

from auralink.errors import AuralinkError

__all__ = ["AICError", "RateModelError", "UnsupportedEncoder"]


class AICError(AuralinkError):
    """AIC could not do what was asked."""


class RateModelError(AICError):
    """The rate-quality model file cannot be used; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"rate-quality model {path}: {reason}")
        self.path = path
        self.reason = reason


class UnsupportedEncoder(AICError):
    """The encoder is not one AIC can drive; ``encoder_type`` names its class."""

    def __init__(self, encoder_type: str) -> None:
        super().__init__(f"AIC drives aiortc's Vp8Encoder only, not {encoder_type}; its bitrate is left to aiortc")
        self.encoder_type = encoder_type
