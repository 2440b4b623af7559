"""AuraLink's AI plane: provider routing, and (to come) offline defaults, memory, MCP tools and co-host agents.

Theory of operation
===================

Each concept is a subpackage, as everywhere in AuraLink:

* :mod:`auralink.agents.providers` routes chat (LLM), speech-to-text and text-to-speech calls for
  a tenant across the cloud providers its BYOK config names (OpenAI-compatible servers, Whisper,
  ElevenLabs, Azure and Google speech), with fallback chains, per-call timeouts, circuit breakers
  and metered plan limits. API keys are sealed at rest and never logged.

The offline defaults, the memory store, MCP tools and the co-host :class:`Agent` of issue 8 are
not here yet. Importing this package loads nothing heavy: each subpackage is imported on its own.
"""

__all__: list[str] = []
