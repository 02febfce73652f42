"""TCP reachability over the overlay: the one probe join and status trust.

A connection that opens, or is refused (the host answered with a reset), proves the peer is up
and the tunnel works; a timeout means nothing answered.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    address: str
    port: int
    state: str
    """``open``, ``refused`` (the host answered: it is up), ``timeout`` or ``error``."""
    rtt_ms: float | None = None

    @property
    def reachable(self) -> bool:
        return self.state in ("open", "refused")


def tcp_probe(address: str, port: int, timeout: float = 2.0) -> Probe:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            rtt = (time.monotonic() - started) * 1000
            return Probe(address, port, "open", round(rtt, 2))
    except ConnectionRefusedError:
        rtt = (time.monotonic() - started) * 1000
        return Probe(address, port, "refused", round(rtt, 2))
    except TimeoutError:
        return Probe(address, port, "timeout")
    except OSError:
        return Probe(address, port, "error")


def wait_for(address: str, port: int, within: float, every: float = 0.5) -> Probe | None:
    """Poll until ``address:port`` answers; None when it did not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        probe = tcp_probe(address, port, timeout=min(2.0, max(0.2, within)))
        if probe.reachable:
            return probe
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)
