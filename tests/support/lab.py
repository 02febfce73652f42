"""What the lab tests share: their marker and skip, in one place, and ``sh`` on a lab host.

A lab test module says ``pytestmark = support.lab.MARKS`` (marked ``lab``; skipped, with the
reason, where this machine cannot run the lab) and its module-scoped lab fixture starts with
``support.lab.require_lab()``. A module that needs other tools passes them:
``lab_marks(LAB_TOOLS_NO_NFT)`` and ``require_lab(LAB_TOOLS_NO_NFT)``.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

import pytest

from farmhand.lab.system import why_unavailable
from farmhand.model.paths import NEBULA_CERT

if TYPE_CHECKING:
    from farmhand.lab import LabFarm

LAB_TOOLS = ("systemd-nspawn", "debootstrap", "chroot", "ip", "nft", "ssh")
"""The desk's tools a lab test needs: containers and their image, the underlay, nftables, ssh."""

LAB_TOOLS_NO_NFT = ("systemd-nspawn", "debootstrap", "chroot", "ip", "ssh")
"""The same without nft (test_lab_bootstrap.py, test_lab_join.py ask no more)."""


@functools.cache
def why_not(tools: tuple[str, ...] = LAB_TOOLS) -> str | None:
    """Why this machine cannot run a lab with ``tools``, or None (asked once per set of tools)."""
    return why_unavailable(tools)


def skip_without_lab(tools: tuple[str, ...] = LAB_TOOLS) -> pytest.MarkDecorator:
    """The skip alone, for a module that also holds tests without a lab (test_lab_infra.py)."""
    reason = why_not(tools)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def lab_marks(tools: tuple[str, ...] = LAB_TOOLS) -> list[pytest.MarkDecorator]:
    """``pytestmark`` of a lab test module: the ``lab`` marker and the skip."""
    return [pytest.mark.lab, skip_without_lab(tools)]


MARKS = lab_marks(LAB_TOOLS)


def require_lab(tools: tuple[str, ...] = LAB_TOOLS) -> None:
    """In a lab fixture, before anything boots: skip when this machine cannot run the lab."""
    reason = why_not(tools)
    if reason is not None:
        pytest.skip(reason)


def sh(
    farm: LabFarm,
    name: str,
    script: str,
    *,
    input: str | None = None,
    timeout: float | None = None,
    both_outputs: bool = False,
) -> str:
    """Run ``script`` with sh as root on lab host ``name``; it must succeed. Returns its stdout,
    stripped.

    ``timeout``: seconds (None: the lab's own limit for one command). A failure shows stderr, or
    stdout when stderr is empty; with ``both_outputs``, stdout and then stderr.
    """
    argv = ["sh", "-c", script]
    if timeout is None:
        result = farm.exec(name, argv, input=input)
    else:
        result = farm.host(name).exec(argv, input=input, timeout=timeout)
    output = f"{result.stdout}\n{result.stderr}" if both_outputs else result.stderr or result.stdout
    assert result.returncode == 0, f"{name}: {script}: {output}"
    return result.stdout.strip()


def holds(farm: LabFarm, name: str) -> str:
    """The worker certificate lab host ``name`` runs Nebula with, once its picker is done
    ('' before)."""
    script = (
        "systemctl is-active -q farmhand-pick-cert && systemctl is-active -q farmhand-nebula && "
        f"nebula-cert print -json -path {NEBULA_CERT}"
    )
    result = farm.exec(name, ["sh", "-c", script])
    if result.returncode != 0:
        return ""
    return str(json.loads(result.stdout)["details"]["name"])
