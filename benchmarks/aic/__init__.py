"""AIC benchmarks: encode sweeps, model training and evaluation against aiortc's default VP8 call."""
