"""Tools for agents: MCP servers over stdio, behind one small protocol.

Theory of operation
===================

An agent lists and calls tools through :class:`Toolset` (:mod:`~auralink.agents.tools.types`):
``list_tools()`` gives :class:`ToolSpec` values, ``call_tool(name, arguments, timeout=...)`` gives a
:class:`ToolResult` whose ``is_error`` says whether the tool itself failed. MCP servers named in
an agent's config (:class:`McpServerConfig`) are opened by an :class:`McpToolbox`, one
:class:`McpSession` (one subprocess) each, through the official ``mcp`` SDK::

    servers = [McpServerConfig(name="time", command="mcp-server-time")]
    async with McpToolbox(servers) as toolbox:
        for spec in await toolbox.list_tools():
            print(spec.qualified_name, spec.description)
        result = await toolbox.call_tool(
            "time__convert_time",
            {"source_timezone": "Europe/London", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        )
        print(result.raise_for_error().structured)

Errors are the :class:`~auralink.errors.ToolError` family; the SDK's exceptions never escape.
Importing this package does not import ``mcp``: it is loaded when a session connects.
"""

from __future__ import annotations

from auralink.agents.tools.mcp import McpServerConfig, McpSession, McpToolbox
from auralink.agents.tools.types import (
    QUALIFIER,
    ContentKind,
    ToolContent,
    ToolResult,
    Toolset,
    ToolSpec,
    split_qualified_name,
)

__all__ = [
    "QUALIFIER",
    "ContentKind",
    "McpServerConfig",
    "McpSession",
    "McpToolbox",
    "ToolContent",
    "ToolResult",
    "ToolSpec",
    "Toolset",
    "split_qualified_name",
]
