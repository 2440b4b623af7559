"""What an agent knows about tools: their specs, their results, and the protocol a tool source speaks.

Theory of operation
===================

An agent sees tools through one small protocol, :class:`Toolset`: ``list_tools()`` gives
:class:`ToolSpec` values (a name, a description for the model, JSON Schemas for the arguments and
the structured result, and the server's hints), and ``call_tool(name, arguments, timeout=...)``
gives a :class:`ToolResult`. MCP servers are one source
(:class:`~auralink.agents.tools.mcp.McpSession` for one server,
:class:`~auralink.agents.tools.mcp.McpToolbox` for the servers of an agent's config); built-in
tools can be another.

A tool that runs and fails is not an exception: MCP reports it as a result with ``isError`` so
the model can read the message and try again, and :class:`ToolResult` keeps it that way
(``is_error``). A caller that wants an exception calls :meth:`ToolResult.raise_for_error`, as
with httpx's ``raise_for_status``. Everything that stops a call from happening or from being
answered is an exception of :class:`~auralink.errors.ToolError`'s family.

Names. Tools from several servers share one namespace in a toolbox, so each has a
:attr:`ToolSpec.qualified_name`, ``{server}__{tool}``, which also fits the function-name rules of
the chat APIs (``^[A-Za-z0-9_-]{1,64}$``) when the parts do. Server names may not contain ``__``,
so the first ``__`` splits a qualified name back (:func:`split_qualified_name`).

Frozen, slotted values and a protocol: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from auralink.errors import ToolFailed, ToolNotFound

__all__ = [
    "QUALIFIER",
    "ContentKind",
    "ToolContent",
    "ToolResult",
    "ToolSpec",
    "Toolset",
    "split_qualified_name",
]

QUALIFIER = "__"
"""Joins a server's name and a tool's name into a qualified name."""

ContentKind = Literal["text", "image", "audio", "resource", "resource_link"]
"""The kinds of content block MCP defines for tool results."""


def split_qualified_name(qualified: str) -> tuple[str, str]:
    """``("time", "convert_time")`` from ``"time__convert_time"``; ToolNotFound if there is no server part."""
    server, sep, tool = qualified.partition(QUALIFIER)
    if not sep or not server or not tool:
        raise ToolNotFound(f"{qualified!r} is not a qualified tool name (server{QUALIFIER}tool)", tool=qualified)
    return server, tool


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as its server describes it."""

    server: str
    """The name of the server that serves it, from the agent's config."""
    name: str
    """Its name on that server."""
    description: str
    """What it does, for the model (empty if the server gave none)."""
    input_schema: Mapping[str, Any] = field(compare=False, repr=False)
    """JSON Schema of the arguments (an ``object`` schema)."""
    output_schema: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """JSON Schema of the structured result, if the tool declares one."""
    title: str | None = None
    """A human-readable title, if the server gave one."""
    read_only: bool | None = None
    """The server's hint that the tool changes nothing (None: no hint). A hint, not a guarantee."""
    destructive: bool | None = None
    """The server's hint that the tool may destroy data (None: no hint)."""

    @property
    def qualified_name(self) -> str:
        """``{server}__{name}``: unique within a toolbox."""
        return f"{self.server}{QUALIFIER}{self.name}"


@dataclass(frozen=True, slots=True)
class ToolContent:
    """One block of a tool's result."""

    kind: ContentKind
    """``text``, ``image``, ``audio``, ``resource`` (embedded) or ``resource_link``."""
    text: str | None = None
    """The text of a text block or of an embedded text resource."""
    data: bytes | None = field(default=None, repr=False)
    """The decoded bytes of an image, an audio clip or an embedded binary resource."""
    mime_type: str | None = None
    """The media type of ``data`` (or of the resource), if given."""
    uri: str | None = None
    """The URI of a resource or a resource link."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call returned."""

    server: str
    """The server that answered."""
    tool: str
    """The tool's name on that server."""
    content: tuple[ToolContent, ...]
    """The content blocks, in order."""
    structured: Mapping[str, Any] | None = field(default=None, compare=False)
    """The structured result (``structuredContent``), checked against the tool's output schema."""
    is_error: bool = False
    """True if the tool ran and reported a failure; the text says what went wrong."""

    @property
    def text(self) -> str:
        """The text blocks, joined by newlines."""
        return "\n".join(block.text for block in self.content if block.kind == "text" and block.text is not None)

    def raise_for_error(self) -> ToolResult:
        """Raise :class:`~auralink.errors.ToolFailed` with the tool's message if ``is_error``; else return self."""
        if self.is_error:
            message = self.text.strip() or "the tool reported an error without a message"
            raise ToolFailed(f"{self.server}{QUALIFIER}{self.tool}: {message[:2000]}", self.server, self.tool)
        return self


@runtime_checkable
class Toolset(Protocol):
    """A source of tools an agent can list and call."""

    async def list_tools(self) -> tuple[ToolSpec, ...]:
        """The tools on offer."""
        ...

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> ToolResult:
        """Call a tool by its :attr:`ToolSpec.qualified_name`; ``timeout`` in seconds, or the source's default."""
        ...
