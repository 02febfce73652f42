"""The hub answering over the overlay: waiting for it, then saying how to reach its shares."""

from __future__ import annotations

from farmhand.join import JoinError
from farmhand.join.probe import Probe, wait_for
from farmhand.join.shares import share_hints
from farmhand.join.state import Joined
from farmhand.model.host import SMB_PORT


def await_hub(joined: Joined, wait: float) -> Joined:
    """``joined`` once the hub answers within ``wait`` seconds; a service that runs but cannot
    reach the hub is an error that says what is left running and how to remove it."""
    state = joined.state
    probe = wait_for(state.hub_overlay_ip, SMB_PORT, wait)
    if probe is None:
        raise JoinError(
            f"nebula runs ({state.service}), but the hub {state.hub_overlay_ip} did not answer "
            f"within {wait:.0f} s; it keeps trying: 'farmhand status' shows when the hub "
            "answers, 'farmhand join --leave' removes everything"
        )
    return hub_hints(joined, probe)


def hub_hints(joined: Joined, probe: Probe) -> Joined:
    """``joined`` with the hub's answer and the lines that say how to reach each share."""
    state = joined.state
    hints = share_hints(
        state.os, state.hub_overlay_ip, state.smb_user, state.shares, str(joined.paths.smb_password)
    )
    return Joined(state, joined.paths, joined.elevation, probe, tuple(hints))
