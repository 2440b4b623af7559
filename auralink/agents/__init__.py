"""AuraLink's AI plane: provider routing, offline speech, MCP tools, memory, and (to come) co-host agents.

Theory of operation
===================

Each concept is a subpackage, as everywhere in AuraLink:

* :mod:`auralink.agents.providers` routes chat (LLM), speech-to-text and text-to-speech calls for
  a tenant across the cloud providers its BYOK config names (OpenAI-compatible servers, Whisper,
  ElevenLabs, Azure and Google speech), with fallback chains, per-call timeouts, circuit breakers
  and metered plan limits. API keys are sealed at rest and never logged.

* :mod:`auralink.agents.speech` transcribes offline with pocketsphinx and speaks with a local
  voice (Piper, or espeak-ng); the router can use them as the last link of every chain.
* :mod:`auralink.agents.tools` lists and calls tools on stdio MCP servers.
* :mod:`auralink.agents.memory` keeps memories, entities and relations per identity in SQLite
  and recalls them by similarity, graph neighbourhood and recency.

The co-host :class:`Agent` of issue 8 is not here yet. Importing this package loads nothing
heavy: each subpackage is imported on its own.
"""

__all__: list[str] = []
