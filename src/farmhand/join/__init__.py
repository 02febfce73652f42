"""``farmhand join``: a person's machine (the boss) joins the farm's overlay.

The boss keybundle is decrypted in memory (``bundle``); the Nebula config and keys go to the
user's config folder (``paths``, written whole through ``staging``); a nebula binary is found or
installed (``nebula``); nebula runs in the foreground (``foreground``) or as a service of the OS
(``services``), which runs and reads only files in a place only root can change (``system``);
only the steps that need administrator rights get them (``admin``). ``flow``
runs a join as a short sequence of ``steps``, recording in join.json (``state``) what ``leave``
must undo; ``hub`` waits for the hub and ``mounts`` mounts its share.
"""

from __future__ import annotations

from collections.abc import Callable

from farmhand.errors import FarmhandError

Say = Callable[[str], None]
"""One line of progress for the person (the CLI prints it on stderr)."""


class JoinError(FarmhandError):
    """Joining (or leaving) the farm failed; the machine is left as it was before."""


class AdminRightsError(JoinError):
    """A step needs administrator rights this process cannot get."""
