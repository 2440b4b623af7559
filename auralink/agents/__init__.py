"""AuraLink's AI plane: provider routing, offline speech, MCP tools, memory, and the co-host agent.

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

* :class:`Agent` (:mod:`auralink.agents.agent`) is the co-host: it hears a call's audio and
  captions it (:mod:`~auralink.agents.vad` endpoints, :mod:`~auralink.agents.captions`
  recognises while people speak), moderates (:mod:`~auralink.agents.moderation`), answers
  questions (:mod:`~auralink.agents.qa`), summarises (:mod:`~auralink.agents.summary`), speaks
  its replies and writes what matters to memory. Without an LLM it does the extractive thing
  (:mod:`~auralink.agents.extractive`) and says so. Its output is the events of
  :mod:`~auralink.agents.events`; :mod:`~auralink.agents.incall` connects it to a call.

Importing this package loads nothing heavy: each subpackage is imported on its own, and
:class:`Agent` and :class:`AgentConfig` are imported on first use (they need numpy, from the
``agents`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auralink.agents.agent import Agent, AgentConfig

__all__ = ["Agent", "AgentConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from auralink.agents import agent  # noqa: PLC0415 - lazy: keeps `import auralink.agents` light

        return getattr(agent, name)
    raise AttributeError(f"module 'auralink.agents' has no attribute {name!r}")
