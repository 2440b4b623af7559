"""MCP tools over stdio, through the official ``mcp`` SDK (2.x): one server per session, many per toolbox.

Theory of operation
===================

An agent's config names its MCP servers (:class:`McpServerConfig`: a name, a command and its
arguments, extra environment, timeouts, and optionally the only tools it may use).
:class:`McpSession` runs one of them as a subprocess and speaks MCP to it on the process's
stdin and stdout through ``mcp.Client`` and ``mcp.client.stdio.stdio_client``::

    config = McpServerConfig(name="time", command=sys.executable, args=("-m", "mcp_server_time"))
    async with McpSession(config) as time_server:
        specs = await time_server.list_tools()
        result = await time_server.call_tool("convert_time", {...}, timeout=5)

:class:`McpToolbox` opens every server of a config under one exit stack and offers their tools
under qualified names (``time__convert_time``). Both are
:class:`~auralink.agents.tools.types.Toolset`\\ s.

Lifecycle
---------
* **Connect** (``async with``). The SDK spawns the server in a new session (its own process group),
  negotiates the protocol version (``server/discover`` for 2026-07-28 servers, else the
  ``initialize`` handshake), and the session lists the tools (following ``nextCursor``). All of it
  must finish within ``connect_timeout``, else :class:`~auralink.errors.ToolTimeout`. A command that
  cannot start, or a server that exits or breaks the handshake, is
  :class:`~auralink.errors.ToolUnavailable`, with the last lines the server wrote on stderr.
* **Calls.** The name must be one the server listed (else :class:`~auralink.errors.ToolNotFound`,
  nothing sent), and the arguments are checked against the tool's input schema with
  ``jsonschema`` before sending (:class:`~auralink.errors.ToolArgumentsInvalid` with the JSON path).
  The SDK's per-request timeout bounds the wait; when it runs out the SDK sends the server a
  ``notifications/cancelled`` for the request, and the call raises
  :class:`~auralink.errors.ToolTimeout`. The session stays usable. The SDK checks structured
  results against the tool's output schema; a result that breaks it, or a malformed message, is
  :class:`~auralink.errors.ToolProtocolError`. A JSON-RPC error from the server is
  :class:`~auralink.errors.ToolRejected` with its ``code``; a server that died is
  :class:`~auralink.errors.ToolUnavailable`. Errors that the tool itself reports come back as a
  :class:`~auralink.agents.tools.types.ToolResult` with ``is_error`` set.
* **Close** (leaving the ``async with``, also on error or cancellation). The SDK's shutdown,
  shielded from cancellation and bounded: close the server's stdin, wait up to 2 s for it to exit,
  then SIGTERM its whole process group, and SIGKILL after 2 s more. No process outlives its
  session; the tests check it, also for a server that ignores SIGTERM.

Exceptions of the SDK (``MCPError``, pydantic's ``ValidationError``, anyio's stream errors,
``OSError``) are translated once, here, into the :class:`~auralink.errors.ToolError` family.

The server's stderr goes to a temporary file owned by the session (a server must not write to a
pipe nobody reads), whose tail is quoted in errors and which is deleted at close. Asyncio only:
the SDK's anyio runs on the event loop; the session must be entered and left in one task, as any
anyio task group must.

The ``mcp`` package is imported on connect, so importing this module stays light; without it,
connecting raises :class:`~auralink.errors.ToolUnavailable` naming the extra to install.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import logging
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from auralink.agents.tools.types import QUALIFIER, ToolContent, ToolResult, ToolSpec, split_qualified_name
from auralink.errors import (
    LocalProtocolError,
    ToolArgumentsInvalid,
    ToolError,
    ToolNotFound,
    ToolProtocolError,
    ToolRejected,
    ToolTimeout,
    ToolUnavailable,
)

if TYPE_CHECKING:
    import mcp
    import mcp.types

__all__ = ["McpServerConfig", "McpSession", "McpToolbox"]

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = -32001  # mcp_types.REQUEST_TIMEOUT: the SDK's own code, never on the wire
_CONNECTION_CLOSED = -32000  # mcp_types.CONNECTION_CLOSED
_MAX_PAGES = 100
_STDERR_TAIL = 600


class McpServerConfig(BaseModel):
    """One stdio MCP server of an agent's config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    """The server's name in this config; it prefixes its tools' qualified names (no ``__`` inside)."""
    command: str = Field(min_length=1)
    """The program to run (``mcp-server-time``, or ``sys.executable`` with ``-m``)."""
    args: tuple[str, ...] = ()
    """Its arguments."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment, over the SDK's short safe default (HOME, PATH, USER...); never the whole environment."""
    cwd: str | None = None
    """The working directory, or None for the current one."""
    connect_timeout: float = Field(default=30.0, gt=0, le=600, allow_inf_nan=False)
    """Seconds to start the server, agree on the protocol and list its tools."""
    call_timeout: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)
    """Seconds a call may take, unless the call gives its own ``timeout``."""
    allow: tuple[str, ...] | None = None
    """The only tools the agent may see and call; None allows every tool the server lists."""

    @field_validator("name")
    @classmethod
    def _no_qualifier(cls, value: str) -> str:
        if QUALIFIER in value:
            raise ValueError(f"a server name may not contain {QUALIFIER!r}")
        return value


_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    OSError,
)


def _load_mcp(server: str) -> Any:
    try:
        return importlib.import_module("mcp")
    except ImportError as exc:
        raise ToolUnavailable(
            "MCP tools need the mcp package; install it with: pip install 'auralink[agents]'", server
        ) from exc


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups, as anyio task groups wrap them."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _content(block: Any) -> ToolContent:
    """One MCP content block as a ToolContent (a malformed one is a ToolProtocolError)."""
    kind = getattr(block, "type", None)
    try:
        if kind == "text":
            return ToolContent("text", text=block.text)
        if kind in ("image", "audio"):
            return ToolContent(kind, data=base64.b64decode(block.data, validate=True), mime_type=block.mime_type)
        if kind == "resource_link":
            return ToolContent("resource_link", uri=str(block.uri), mime_type=block.mime_type, text=block.name)
        if kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            blob = getattr(resource, "blob", None)
            data = base64.b64decode(blob, validate=True) if blob is not None else None
            return ToolContent("resource", text=text, data=data, mime_type=resource.mime_type, uri=str(resource.uri))
    except (binascii.Error, ValueError) as exc:
        raise ToolProtocolError(f"a {kind} block whose data is not base64") from exc
    raise ToolProtocolError(f"an unknown content block type {kind!r}")


class McpSession:
    """One stdio MCP server, from spawn to shutdown; see the module docstring."""

    def __init__(self, config: McpServerConfig, *, client_name: str = "auralink") -> None:
        """Construct; starts nothing until ``async with``."""
        self._config = config
        self._client_name = client_name
        self._client: mcp.Client | None = None
        self._stack: AsyncExitStack | None = None
        self._stderr: IO[str] | None = None
        self._tools: dict[str, ToolSpec] = {}
        self._validators: dict[str, Any | None] = {}  # None: the schema is invalid, so not checked
        self._closed = False
        self._mcp_error: type[BaseException] = ToolError  # replaced by mcp.MCPError on connect
        self._sdk_errors: tuple[type[BaseException], ...] = ()

    def __repr__(self) -> str:
        state = "open" if self._client is not None else ("closed" if self._closed else "new")
        return f"McpSession(server={self._config.name!r}, {state}, tools={len(self._tools)})"

    @property
    def config(self) -> McpServerConfig:
        """The server's config."""
        return self._config

    @property
    def name(self) -> str:
        """The server's name in the config."""
        return self._config.name

    @property
    def protocol_version(self) -> str:
        """The MCP protocol version agreed with the server (``2026-07-28``, ``2025-11-25``...)."""
        return str(self._open().protocol_version)

    @property
    def server_info(self) -> tuple[str, str] | None:
        """The server's own name and version, if it gave them."""
        info = self._open().server_info
        return None if info is None else (str(info.name), str(info.version))

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> McpSession:
        if self._client is not None or self._closed:
            raise LocalProtocolError(f"MCP session {self.name!r} can be entered once")
        sdk = _load_mcp(self.name)
        stdio = importlib.import_module("mcp.client.stdio")
        self._mcp_error = sdk.MCPError
        # What the SDK raises, by its documentation: MCPError (JSON-RPC errors, timeouts, a closed
        # connection), pydantic's ValidationError and RuntimeError (an answer that breaks the schema),
        # and anyio's stream errors or OSError (a broken pipe). anyio wraps errors in groups.
        self._sdk_errors = (sdk.MCPError, ValidationError, RuntimeError, *_STREAM_ERRORS, ExceptionGroup)
        parameters = stdio.StdioServerParameters(
            command=self._config.command,
            args=list(self._config.args),
            env=dict(self._config.env) or None,
            cwd=self._config.cwd,
        )
        stack = AsyncExitStack()
        stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - the stack closes it
        self._stderr = stack.enter_context(stderr)
        client = sdk.Client(
            stdio.stdio_client(parameters, errlog=self._stderr),
            client_info=sdk.types.Implementation(name=self._client_name, version="0"),
            read_timeout_seconds=self._config.call_timeout,
        )
        timeout = self._config.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                await stack.enter_async_context(client)
                self._client = client
                await self._list_all()
        except TimeoutError:
            error: ToolError = ToolTimeout(
                f"MCP server {self.name!r} did not start and list its tools within {timeout:g} s{self._tail()}",
                self.name,
                timeout=timeout,
            )
        except ToolError as exc:
            error = exc
        except FileNotFoundError as exc:
            error = ToolUnavailable(f"MCP server {self.name!r} could not be started: {exc}", self.name)
        except self._sdk_errors as exc:
            error = self._translate(exc, None, "connect")
        except BaseException:
            await self._shutdown(stack)
            raise
        else:
            self._stack = stack
            logger.info("MCP server %s: %s, %d tools", self.name, self.protocol_version, len(self._tools))
            return self
        await self._shutdown(stack)
        raise error

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Shut the server down (idempotent); see the module docstring for the sequence."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await self._shutdown(stack)

    async def _shutdown(self, stack: AsyncExitStack) -> None:
        self._client = None
        self._closed = True
        try:
            await stack.aclose()
        except (OSError, RuntimeError) as exc:  # teardown of a server that already broke: nothing left to save
            logger.debug("MCP server %s: error while closing: %r", self.name, exc)
        finally:
            self._stderr = None

    def _open(self) -> mcp.Client:
        if self._client is None:
            state = "closed" if self._closed else "not open"
            raise LocalProtocolError(f"MCP session {self.name!r} is {state}; use it inside 'async with'")
        return self._client

    def _tail(self) -> str:
        """The last words the server wrote on stderr, for an error message ('' if none)."""
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            text = self._stderr.read()[-_STDERR_TAIL:].strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends with: {text!r}" if text else ""

    # -- errors ---------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, tool: str | None, what: str) -> ToolError:
        """The one place where the SDK's exceptions become ours."""
        exc = _leaf(exc)
        mcp_error = isinstance(exc, self._mcp_error)
        code = getattr(exc, "code", None)
        where = f"MCP server {self.name!r}" + (f", tool {tool!r}" if tool else "")
        if mcp_error and code == _REQUEST_TIMEOUT:
            timeout = self._config.call_timeout
            return ToolTimeout(f"{where}: no answer to {what} in time", self.name, tool, timeout=timeout)
        if mcp_error and code == _CONNECTION_CLOSED:
            return ToolUnavailable(f"{where}: the server went away during {what}{self._tail()}", self.name, tool)
        if mcp_error and isinstance(code, int):
            return ToolRejected(f"{where}: {what} refused ({code}): {exc}", self.name, tool, code)
        if isinstance(exc, ValidationError | RuntimeError):
            return ToolProtocolError(f"{where}: an invalid answer to {what}: {exc}", self.name, tool)
        if isinstance(exc, _STREAM_ERRORS):
            return ToolUnavailable(
                f"{where}: the connection broke during {what} ({type(exc).__name__}){self._tail()}", self.name, tool
            )
        return ToolProtocolError(f"{where}: {what} failed: {type(exc).__name__}: {exc}", self.name, tool)

    # -- tools ----------------------------------------------------------------------------------

    async def _list_all(self) -> None:
        client = self._open()
        tools: dict[str, ToolSpec] = {}
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            for tool in page.tools:
                if self._config.allow is None or tool.name in self._config.allow:
                    tools[tool.name] = self._spec(tool)
            cursor = page.next_cursor
            if cursor is None:
                break
        self._tools = tools
        self._validators = {}

    def _spec(self, tool: mcp.types.Tool) -> ToolSpec:
        hints = tool.annotations
        return ToolSpec(
            server=self.name,
            name=tool.name,
            description=tool.description or "",
            input_schema=dict(tool.input_schema),
            output_schema=None if tool.output_schema is None else dict(tool.output_schema),
            title=tool.title,
            read_only=None if hints is None else hints.read_only_hint,
            destructive=None if hints is None else hints.destructive_hint,
        )

    async def list_tools(self, *, refresh: bool = False) -> tuple[ToolSpec, ...]:
        """The tools the server offers (those ``allow`` lets through), as listed at connect or now if ``refresh``."""
        self._open()
        if refresh:
            try:
                await self._list_all()
            except self._sdk_errors as exc:
                raise self._translate(exc, None, "tools/list") from exc
        return tuple(self._tools.values())

    def _check_arguments(self, spec: ToolSpec, arguments: Mapping[str, Any]) -> None:
        jsonschema = importlib.import_module("jsonschema")  # a dependency of mcp
        if spec.name not in self._validators:
            cls = jsonschema.validators.validator_for(spec.input_schema, default=jsonschema.Draft202012Validator)
            try:
                cls.check_schema(spec.input_schema)
            except jsonschema.exceptions.SchemaError:
                logger.warning("MCP server %s: tool %s has an invalid input schema; not checked", self.name, spec.name)
                self._validators[spec.name] = None
            else:
                self._validators[spec.name] = cls(spec.input_schema)
        validator = self._validators[spec.name]
        if validator is None:
            return
        error = jsonschema.exceptions.best_match(validator.iter_errors(dict(arguments)))
        if error is not None:
            raise ToolArgumentsInvalid(
                f"{spec.qualified_name}: invalid arguments at {error.json_path}: {error.message}",
                self.name,
                spec.name,
                path=error.json_path,
            )

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> ToolResult:
        """Call a tool by its name on this server (or its qualified name); see the module docstring."""
        client = self._open()
        if QUALIFIER in name and name.startswith(self.name + QUALIFIER):
            name = split_qualified_name(name)[1]
        spec = self._tools.get(name)
        if spec is None:
            raise ToolNotFound(f"MCP server {self.name!r} offers no tool {name!r}", self.name, name)
        arguments = dict(arguments or {})
        self._check_arguments(spec, arguments)
        limit = self._config.call_timeout if timeout is None else timeout
        if not limit > 0:
            raise LocalProtocolError(f"a timeout is positive, not {limit}")
        try:
            result = await client.call_tool(name, arguments, read_timeout_seconds=limit)
        except self._sdk_errors as exc:
            error = self._translate(exc, name, "tools/call")
            if isinstance(error, ToolTimeout):
                error.timeout = limit
            raise error from exc
        structured = result.structured_content
        return ToolResult(
            server=self.name,
            tool=name,
            content=tuple(_content(block) for block in result.content),
            structured=None if structured is None else dict(structured),
            is_error=bool(result.is_error),
        )


class McpToolbox:
    """The MCP servers of an agent's config, their tools under qualified names (``server__tool``)."""

    def __init__(self, servers: Iterable[McpServerConfig], *, client_name: str = "auralink") -> None:
        """Construct; starts nothing until ``async with``. Server names must be unique."""
        configs = tuple(servers)
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise LocalProtocolError(f"MCP server names must be unique: {names}")
        self._configs = configs
        self._client_name = client_name
        self._sessions: dict[str, McpSession] = {}
        self._unavailable: dict[str, ToolError] = {}
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"McpToolbox(open={sorted(self._sessions)!r}, unavailable={sorted(self._unavailable)!r})"

    @property
    def unavailable(self) -> Mapping[str, ToolError]:
        """The servers that could not be opened, and why; the toolbox works without their tools."""
        return dict(self._unavailable)

    def session(self, server: str) -> McpSession:
        """The open session of ``server``; ToolUnavailable if it did not open, ToolNotFound if it is unknown."""
        session = self._sessions.get(server)
        if session is not None:
            return session
        if server in self._unavailable:
            raise ToolUnavailable(f"MCP server {server!r} is unavailable: {self._unavailable[server]}", server)
        raise ToolNotFound(f"no MCP server {server!r} in this toolbox", server)

    async def __aenter__(self) -> McpToolbox:
        """Open every server, one after the other; one that fails is logged and left out (see ``unavailable``)."""
        if self._stack is not None:
            raise LocalProtocolError("an McpToolbox can be entered once")
        stack = self._stack = AsyncExitStack()
        try:
            for config in self._configs:
                try:
                    session = await stack.enter_async_context(McpSession(config, client_name=self._client_name))
                except ToolError as exc:
                    logger.warning("MCP server %s is unavailable: %s", config.name, exc)
                    self._unavailable[config.name] = exc
                else:
                    self._sessions[config.name] = session
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Shut every server down, the last opened first (idempotent)."""
        stack, self._stack = self._stack, None
        self._sessions.clear()
        if stack is not None:
            await stack.aclose()

    async def list_tools(self) -> tuple[ToolSpec, ...]:
        """Every tool of every open server; call them by :attr:`ToolSpec.qualified_name`."""
        specs: list[ToolSpec] = []
        for session in self._sessions.values():
            specs.extend(await session.list_tools())
        return tuple(specs)

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> ToolResult:
        """Call a tool by its qualified name (``time__convert_time``)."""
        server, tool = split_qualified_name(name)
        return await self.session(server).call_tool(tool, arguments, timeout=timeout)
