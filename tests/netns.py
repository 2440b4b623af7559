"""A small Linux network lab for tests: network namespaces as hosts, veth pairs as cables.

Theory of operation
-------------------
A :class:`Lab` is a context manager. Each :meth:`Lab.host` is a fresh network namespace, named
``al-<pid>-<n><suffix>`` so that concurrent test runs never collide, with ``lo`` up. Each
:meth:`Lab.link` is a veth pair created directly inside the two namespaces (so its device names,
``eth0``, ``eth1``... per host, never touch the root namespace), with ``.1`` and ``.2`` of a /24
(by default ``10.77.<n>.0/24``; namespaces are isolated, so the subnet cannot clash with the
machine's) and both ends up. :meth:`Host.popen` and :meth:`Host.run` run a command inside a
namespace through ``ip netns exec``.

Leaving the lab kills the processes it started (by their ``Popen``), then deletes every
namespace, whatever happened inside the block; deleting a namespace deletes its veth ends.
If namespaces cannot be made here (not root, no ``ip``, ``ip netns add`` refused), entering the
lab or adding a host calls :func:`pytest.skip` with the reason.

```python
with Lab() as lab:
    a, b = lab.host("a"), lab.host("b")
    cable = lab.link(a, b)                       # a: 10.77.0.1/24 on eth0, b: 10.77.0.2/24
    done = b.run("ping", "-c1", "-W2", cable.a_ip, timeout=5)
```

Later uses (the NAT lab) add routers: a host with two links, ``ip -n NAME ...`` commands through
:meth:`Host.ip`, and nftables rules through :meth:`Host.run`.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest

__all__ = ["COMMAND_TIMEOUT", "Host", "Lab", "Link", "unavailable_reason"]

COMMAND_TIMEOUT = 10.0
"""Seconds any one ``ip`` command may take."""

_labs = itertools.count()


def unavailable_reason() -> str | None:
    """Why this process cannot build namespaces, or None if it probably can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise with its stderr if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclass
class Host:
    """One network namespace."""

    name: str
    """The namespace name (``ip netns list``)."""
    lab: Lab = field(repr=False)
    """The lab that deletes this namespace."""
    devices: int = 0
    """How many veth ends live here (the next one is ``eth<devices>``)."""

    def argv(self, *command: str) -> list[str]:
        """``command`` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ip -n NAME ARGS``, which fails loudly."""
        return _ip("-n", self.name, *args)

    def run(self, *command: str, timeout: float, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``command`` here to completion (text output captured), within ``timeout`` seconds."""
        return subprocess.run(
            self.argv(*command), capture_output=True, text=True, timeout=timeout, check=check, **kwargs
        )

    def popen(self, *command: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``command`` here; on exit the lab kills it if it still runs, and closes its pipes."""
        proc: subprocess.Popen[str] = subprocess.Popen(self.argv(*command), text=True, **kwargs)
        self.lab.processes.append(proc)
        return proc


@dataclass(frozen=True)
class Link:
    """A veth pair between two hosts, one /24 with ``.1`` on ``a`` and ``.2`` on ``b``."""

    a: Host
    """One end's host."""
    b: Host
    """The other end's host."""
    a_dev: str
    """The device name in ``a``."""
    b_dev: str
    """The device name in ``b``."""
    a_ip: str
    """``a``'s address on the link."""
    b_ip: str
    """``b``'s address on the link."""
    prefix_len: int
    """The subnet's prefix length."""


class Lab:
    """Namespaces and links that are always removed on exit, even if the test fails."""

    def __init__(self) -> None:
        self.prefix = f"al-{os.getpid()}-{next(_labs)}"
        """Every namespace of this lab is named ``<prefix><suffix>``."""
        self.hosts: list[Host] = []
        self.links: list[Link] = []
        self.processes: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Lab:
        reason = unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill our processes still running, close their pipes, delete every namespace (and so every veth)."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=COMMAND_TIMEOUT)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self.processes.clear()
        failures = []
        for host in reversed(self.hosts):
            try:
                _ip("netns", "del", host.name)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failures.append(str(exc))
        self.hosts.clear()
        if failures:
            raise RuntimeError("could not remove namespaces: " + "; ".join(failures))

    def host(self, suffix: str) -> Host:
        """A new namespace ``<prefix><suffix>`` with ``lo`` up; skips the test if namespaces are refused."""
        name = f"{self.prefix}{suffix}"
        try:
            _ip("netns", "add", name)
        except RuntimeError as exc:
            pytest.skip(f"cannot create a network namespace here: {exc}")
        host = Host(name, self)
        self.hosts.append(host)
        host.ip("link", "set", "lo", "up")
        return host

    def link(self, a: Host, b: Host, subnet: str | None = None) -> Link:
        """A veth pair from ``a`` to ``b`` on ``subnet`` (default ``10.77.<n>.0/24``), both ends up."""
        network = ipaddress.ip_network(subnet or f"10.77.{len(self.links)}.0/24")
        a_ip, b_ip = str(network[1]), str(network[2])
        a_dev, b_dev = f"eth{a.devices}", f"eth{b.devices}"
        _ip("link", "add", a_dev, "netns", a.name, "type", "veth", "peer", "name", b_dev, "netns", b.name)
        a.devices += 1
        b.devices += 1
        for host, dev, ip in ((a, a_dev, a_ip), (b, b_dev, b_ip)):
            host.ip("addr", "add", f"{ip}/{network.prefixlen}", "dev", dev)
            host.ip("link", "set", dev, "up")
        link = Link(a, b, a_dev, b_dev, a_ip, b_ip, network.prefixlen)
        self.links.append(link)
        return link
