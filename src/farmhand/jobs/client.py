"""The boss's side of the hub's job service: one JSON request over OpenSSH to the forced
command, with this boss's own job key and the hub's pinned host key (no trust on first use),
as workers claim leases (onhost/leases.py). Every failure is one line: an unreachable hub, a
refused (revoked) key, a host that is not the hub, or the service's own refusal."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand.errors import FarmhandError, UsageError
from farmhand.onhost import jobs as service
from farmhand.onhost import leases


class JobError(FarmhandError):
    """The hub's job service refused or could not be reached; ``reason`` is its word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class HubAccess:
    """How this boss reaches the job service: the hub's overlay address and sshd port, the
    boss's job key and a known_hosts file pinning the hub's host key."""

    hub: str
    key: Path
    known_hosts: Path
    port: int = 22
    user: str = service.JOBS_USER
    connect_timeout: float = 10.0
    ssh: str = "ssh"
    extra: tuple[str, ...] = field(default=())

    def argv(self) -> list[str]:
        return [
            self.ssh, "-F", "/dev/null",
            "-i", str(self.key),
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"HostKeyAlias={leases.HOST_KEY_ALIAS}",
            "-o", f"HostKeyAlgorithms={leases.HOST_KEY_ALGORITHM}",
            "-o", "UpdateHostKeys=no",
            "-o", f"ConnectTimeout={int(self.connect_timeout)}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=2",
            "-o", "LogLevel=ERROR",
            *self.extra,
            "-p", str(self.port),
            "-l", self.user,
            self.hub,
        ]  # fmt: skip


def known_hosts_line(host_public: bytes) -> bytes:
    """The hub's lease host key as a known_hosts line under the alias the client pins."""
    words = host_public.decode().split()
    return f"{leases.HOST_KEY_ALIAS} {words[0]} {words[1]}\n".encode()


def ask(access: HubAccess, request: dict[str, Any]) -> dict[str, Any]:
    """One request; the answer when ``ok``, else JobError with the hub's (or ssh's) reason."""
    where = f"{access.hub}:{access.port}"
    try:
        result = subprocess.run(
            access.argv(),
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=access.connect_timeout + service.SESSION_LIMIT + 5,
        )
    except FileNotFoundError:
        raise UsageError(f"no {access.ssh} on this machine: install OpenSSH's client") from None
    except subprocess.TimeoutExpired:
        raise JobError("unreachable", f"the hub {where} did not answer in time") from None
    err = result.stderr.decode("utf-8", "replace").strip().splitlines()
    detail = err[-1] if err else f"ssh exit {result.returncode}"
    if result.returncode == 0:
        try:
            answer = json.loads(result.stdout.decode("utf-8"))
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise JobError(
                "hub-error", f"the hub {where} answered something that is not a job answer"
            )
        if not answer.get("ok"):
            raise JobError(str(answer.get("reason", "?")), str(answer.get("message", "refused")))
        return answer
    if any("Permission denied" in line for line in err):
        raise JobError(
            "refused",
            f"the hub {where} refused this boss's job key ({detail}): was this boss revoked, or "
            "is the hub not deployed from this key store yet?",
        )
    if any("Host key verification failed" in line or "IDENTIFICATION" in line for line in err):
        raise JobError(
            "hub-key",
            f"the host at {where} is not the hub: its key does not match the one pinned in this "
            "boss's bundle",
        )
    raise JobError("unreachable", f"the hub {where} is unreachable ({detail}): is nebula up?")
