"""sshd's key-only drop-in, where a key login is known to work."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile
from farmhand.model.host import HostModel
from farmhand.model.paths import SSHD_DROPIN
from farmhand.model.sshd import KEY_ONLY


def ssh_files(model: HostModel, expand: Callable[..., bytes]) -> list[HostFile]:
    if not model.key_logins_work:
        return []
    return [HostFile(SSHD_DROPIN, expand("ssh/00-farmhand.conf.j2", settings=KEY_ONLY))]
