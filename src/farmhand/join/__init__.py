"""``farmhand join``: a person's machine (the boss) joins the farm's overlay.

The boss keybundle is decrypted in memory; the Nebula config and keys go to the user's config
folder (``paths``); a nebula binary is found or installed (``nebula``); nebula runs in the
foreground (``foreground``) or as a service of the OS (``services``); only the steps that need
administrator rights get them (``admin``), and ``setup`` ties it together and undoes it all on
failure or ``--leave``.
"""

from __future__ import annotations

from farmhand.errors import FarmhandError


class JoinError(FarmhandError):
    """Joining (or leaving) the farm failed; the machine is left as it was before."""


class AdminRightsError(JoinError):
    """A step needs administrator rights this process cannot get."""
