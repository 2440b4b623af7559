"""Real ``auralink-node`` processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

READY_TIMEOUT = 30.0


def cli(home: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one CLI command against ``home``."""
    return subprocess.run(
        ["auralink-node", "--home", str(home), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def cli_json(home: Path, *args: str, timeout: float = 60.0) -> Any:
    done = cli(home, *args, "--json", timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Daemon:
    """``auralink-node up`` in a subprocess; waits for its ready line (no sleeping)."""

    def __init__(
        self, home: Path, *extra: str, init: bool = True, listen: str = "127.0.0.1:0", prefix: Sequence[str] = ()
    ) -> None:
        """Start ``auralink-node up`` for ``home``; ``prefix`` runs it through e.g. ``ip netns exec NS``."""
        self.home = home
        if init and not (home / "key").exists():
            done = cli(home, "init")
            assert done.returncode == 0, done.stderr
        self.log = (home.parent / f"{home.name}.log").open("w")
        self.proc = subprocess.Popen(
            [*prefix, "auralink-node", "--home", str(home), "up", "--listen", listen, "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.ready = self._wait_ready()
        self.aura_id: str = self.ready["aura_id"]
        self.address: str = self.ready["listen"][0]

    def _wait_ready(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if selector.select(timeout=deadline - time.monotonic()):
                    line = self.proc.stdout.readline()
                    if not line:
                        break
                    message = dict(json.loads(line))
                    if message.get("event") == "ready":
                        return message
                    self.proc.wait(timeout=30)  # it is exiting with an error: let it finish its log
                    break
        finally:
            selector.close()
        self.kill()
        raise AssertionError(f"daemon in {self.home} did not become ready; see {self.log.name}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the daemon and wait for it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: no clean-up at all."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.log.close()
