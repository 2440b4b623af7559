"""MCP tools over stdio: a real round trip with ``mcp-server-time``, timeouts, failures, and no leaked processes.

Every session here is a real subprocess. ``mcp-server-time`` is the reference server of the MCP
project (offline: it reads the tz database of the ``tzdata`` wheel). The failure cases use a small
server written with the same SDK (``mcp.server.mcpserver.MCPServer``), run with ``python -c``.
After each session the test checks that every process it started is gone, zombies included.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import pytest

from auralink.agents import tools
from auralink.agents.tools import McpServerConfig, McpSession, McpToolbox, ToolResult, Toolset
from auralink.errors import (
    LocalProtocolError,
    ToolArgumentsInvalid,
    ToolFailed,
    ToolNotFound,
    ToolRejected,
    ToolTimeout,
    ToolUnavailable,
)

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("mcp") is None, reason="the mcp SDK is not installed (pip install 'auralink[agents]')"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("mcp_server_time") is None,
        reason="mcp-server-time is not installed (pip install mcp-server-time)",
    ),
]

TIME = McpServerConfig(
    name="time", command=sys.executable, args=("-m", "mcp_server_time", "--local-timezone", "UTC"), call_timeout=10
)

TEST_SERVER = """
import os, anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("auralink-test")

@server.tool()
async def wait(seconds: float) -> str:
    '''Sleep, then answer.'''
    await anyio.sleep(seconds)
    return "done"

@server.tool()
def echo(text: str) -> str:
    '''Say it back.'''
    return text

@server.tool()
def crash() -> str:
    '''Exit at once, mid-call.'''
    os._exit(3)

server.run()
"""
TEST = McpServerConfig(name="test", command=sys.executable, args=("-c", TEST_SERVER), call_timeout=10)


def children() -> set[int]:
    """The pids of this process's children, zombies included."""
    me = str(os.getpid())
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me:
            found.add(int(entry.name))
    return found


@asynccontextmanager
async def no_leaks() -> AsyncIterator[set[int]]:
    """Yields a set that fills with the children started inside; they must all be gone at the end."""
    before = children()
    started: set[int] = set()
    try:
        yield started
    finally:
        started |= children() - before
    left = {pid for pid in started if Path(f"/proc/{pid}").exists()}
    assert not left, f"processes left behind: {left}"


# ---------------------------------------------------------------------------------------------
# The round trip


async def test_round_trip_with_mcp_server_time_through_the_toolbox() -> None:
    async with no_leaks() as started, McpToolbox([TIME]) as toolbox:
        started.update(children())
        assert isinstance(toolbox, Toolset)
        specs = {spec.qualified_name: spec for spec in await toolbox.list_tools()}
        assert set(specs) == {"time__get_current_time", "time__convert_time"}
        convert = specs["time__convert_time"]
        assert (convert.server, convert.name, convert.read_only, convert.destructive) == (
            "time",
            "convert_time",
            True,
            False,
        )
        assert set(convert.input_schema["required"]) == {"source_timezone", "time", "target_timezone"}
        assert convert.output_schema is not None and "time_difference" in convert.output_schema["properties"]
        session = toolbox.session("time")
        assert session.server_info is not None and session.server_info[0] == "mcp-time"
        assert session.protocol_version  # negotiated: 2026-07-28 with these versions

        result = await toolbox.call_tool(
            "time__convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Kolkata"}
        )
        assert isinstance(result, ToolResult) and not result.is_error
        assert result.raise_for_error() is result
        assert result.structured is not None
        assert result.structured["time_difference"] == "+5.5h"  # no DST in either zone: true all year
        assert result.structured["target"]["datetime"].endswith("T17:30:00+05:30")
        assert '"time_difference": "+5.5h"' in result.text  # the same answer as a text block

        now = await toolbox.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert now.structured is not None and now.structured["timezone"] == "UTC"
        stamp = datetime.fromisoformat(now.structured["datetime"])
        offset = stamp.utcoffset()
        assert offset is not None and offset.total_seconds() == 0
    assert len(started) == 1


async def test_a_tool_that_fails_answers_with_an_error_result() -> None:
    async with no_leaks(), McpSession(TIME) as session:
        result = await session.call_tool("get_current_time", {"timezone": "Mars/Olympus_Mons"})
        assert result.is_error and "Invalid timezone" in result.text
        with pytest.raises(ToolFailed, match="Invalid timezone") as failed:
            result.raise_for_error()
        assert (failed.value.server, failed.value.tool) == ("time", "get_current_time")
        # The session is still good.
        assert not (await session.call_tool("time__get_current_time", {"timezone": "UTC"})).is_error


async def test_unknown_tools_and_bad_arguments_are_refused_before_sending() -> None:
    allowed = TIME.model_copy(update={"allow": ("get_current_time",)})
    async with no_leaks(), McpToolbox([allowed]) as toolbox:
        assert [spec.name for spec in await toolbox.list_tools()] == ["get_current_time"]
        with pytest.raises(ToolNotFound, match="no tool 'convert_time'"):  # listed by the server, not allowed
            await toolbox.call_tool("time__convert_time", {})
        with pytest.raises(ToolNotFound, match="no MCP server 'weather'"):
            await toolbox.call_tool("weather__forecast", {})
        with pytest.raises(ToolNotFound, match="not a qualified tool name"):
            await toolbox.call_tool("get_current_time", {})
        with pytest.raises(ToolArgumentsInvalid, match="is not of type 'string'") as invalid:
            await toolbox.call_tool("time__get_current_time", {"timezone": 3})
        assert (invalid.value.path, invalid.value.code) == ("$.timezone", None)
        with pytest.raises(ToolArgumentsInvalid, match="'timezone' is a required property"):
            await toolbox.call_tool("time__get_current_time")
        assert isinstance(invalid.value, ToolRejected)


# ---------------------------------------------------------------------------------------------
# Timeouts and failures


async def test_a_call_that_outlives_its_timeout_raises_and_the_session_stays_usable() -> None:
    async with no_leaks(), McpSession(TEST) as session:
        started = time.monotonic()
        with pytest.raises(ToolTimeout, match="no answer to tools/call in time") as timed_out:
            await session.call_tool("wait", {"seconds": 30}, timeout=0.5)
        assert time.monotonic() - started < 5
        assert (timed_out.value.server, timed_out.value.tool, timed_out.value.timeout) == ("test", "wait", 0.5)
        assert (await session.call_tool("echo", {"text": "still here"})).text == "still here"
        # A caller that gives up (its own cancellation, here a timeout around the call) does not break it either.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await session.call_tool("wait", {"seconds": 30})
        assert (await session.call_tool("echo", {"text": "again"})).structured == {"result": "again"}


async def test_a_server_that_dies_mid_call_is_unavailable_and_is_cleaned_up() -> None:
    async with no_leaks(), McpSession(TEST) as session:
        with pytest.raises(ToolUnavailable, match="went away"):
            await session.call_tool("crash")
        with pytest.raises(ToolUnavailable):
            await session.call_tool("echo", {"text": "anyone?"})


async def test_servers_that_cannot_start_or_answer_are_unavailable_and_leave_no_process() -> None:
    missing = McpServerConfig(name="missing", command="/nonexistent/mcp-server")
    mute = McpServerConfig(
        name="mute", command=sys.executable, args=("-c", "import sys; sys.stdin.read()"), connect_timeout=1
    )
    stubborn = McpServerConfig(  # ignores the closed stdin and SIGTERM: only SIGKILL ends it
        name="stubborn",
        command=sys.executable,
        args=("-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"),
        connect_timeout=1,
    )
    failing = McpServerConfig(
        name="failing",
        command=sys.executable,
        args=("-c", "import sys; print('no config file', file=sys.stderr); sys.exit(2)"),
    )
    async with no_leaks():
        with pytest.raises(ToolUnavailable, match="could not be started"):
            async with McpSession(missing):
                pass
        with pytest.raises(ToolTimeout, match="within 1 s") as timed_out:
            async with McpSession(mute):
                pass
        assert timed_out.value.timeout == 1
        with pytest.raises(ToolUnavailable, match="no config file"):  # the server's stderr, quoted
            async with McpSession(failing):
                pass
        started = time.monotonic()
        with pytest.raises(ToolTimeout):
            async with McpSession(stubborn):
                pass
        assert time.monotonic() - started < 10  # 1 s, then stdin closed, SIGTERM after 2 s, SIGKILL after 2 s more


async def test_a_toolbox_works_without_the_servers_that_failed() -> None:
    missing = McpServerConfig(name="missing", command="/nonexistent/mcp-server")
    async with no_leaks(), McpToolbox([missing, TIME]) as toolbox:
        assert set(toolbox.unavailable) == {"missing"}
        assert isinstance(toolbox.unavailable["missing"], ToolUnavailable)
        assert {spec.server for spec in await toolbox.list_tools()} == {"time"}
        with pytest.raises(ToolUnavailable, match="unavailable"):
            await toolbox.call_tool("missing__anything", {})


async def test_leaving_the_block_on_an_error_still_stops_the_server() -> None:
    async with no_leaks() as started:
        with pytest.raises(RuntimeError, match="the agent crashed"):
            async with McpSession(TIME) as session:
                started.update(children())
                await session.call_tool("get_current_time", {"timezone": "UTC"})
                raise RuntimeError("the agent crashed")
        assert started
    with pytest.raises(LocalProtocolError, match="closed"):
        await session.call_tool("get_current_time", {"timezone": "UTC"})
    with pytest.raises(LocalProtocolError, match="entered once"):
        async with session:
            pass


def test_config_and_public_api() -> None:
    with pytest.raises(ValueError, match="may not contain"):
        McpServerConfig(name="my__server", command="x")
    with pytest.raises(ValueError):
        McpServerConfig(name="x", command="x", unknown=1)  # type: ignore[call-arg]
    with pytest.raises(LocalProtocolError, match="unique"):
        McpToolbox([TIME, TIME])
    assert tools.split_qualified_name("time__convert_time") == ("time", "convert_time")
    assert sorted(tools.__all__) == sorted(
        [
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
    )
