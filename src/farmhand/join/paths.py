"""Where join keeps the farm's files on this machine: the user's config folder (platformdirs).

Layout of ``<config>/farmhand/join/``::

    config.yml, ca.crt, host.crt   Nebula's config and the boss certificate
    host.key, smb.password         secrets: 0600 (an owner-only ACL on Windows)
    jobs.key, hub_known_hosts      the boss's job key (0600) and the hub's pinned host key
    farm.json                      the bundle's metadata (plan, peers, blocklist): no secrets
    join.json                      what join installed (facts, no commands), for --leave
    nebula.log, foreground.pid     nebula's output and farmhand's pid in foreground mode

With ``--service`` the folder keeps no config.yml and no host.key: the service runs from its
own root-owned place (``system``), and this folder holds only the record, the CA and
certificate (for ``farmhand status``), farm.json and the SMB password (for mounting).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "farmhand"
CONFIG_ENV = "FARMHAND_CONFIG_DIR"


def config_root() -> Path:
    """farmhand's folder in the user's config dir ($FARMHAND_CONFIG_DIR overrides it)."""
    override = os.environ.get(CONFIG_ENV, "").strip()
    if override:
        return Path(override)
    return platformdirs.user_config_path(APP, appauthor=False, roaming=False)


@dataclass(frozen=True)
class JoinPaths:
    root: Path

    @classmethod
    def default(cls) -> JoinPaths:
        return cls(config_root())

    @property
    def dir(self) -> Path:
        return self.root / "join"

    @property
    def staging(self) -> Path:
        return self.root / ".join.new"

    @property
    def config(self) -> Path:
        return self.dir / "config.yml"

    @property
    def key(self) -> Path:
        return self.dir / "host.key"

    @property
    def cert(self) -> Path:
        return self.dir / "host.crt"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def smb_password(self) -> Path:
        return self.dir / "smb.password"

    @property
    def jobs_key(self) -> Path:
        """This boss's job key (``farmhand submit`` and friends): a secret, 0600."""
        return self.dir / "jobs.key"

    @property
    def hub_known_hosts(self) -> Path:
        """The hub's pinned host key, for the job service's SSH."""
        return self.dir / "hub_known_hosts"

    @property
    def farm(self) -> Path:
        return self.dir / "farm.json"

    @property
    def state(self) -> Path:
        return self.dir / "join.json"

    @property
    def log(self) -> Path:
        return self.dir / "nebula.log"

    @property
    def foreground_pid(self) -> Path:
        """The running ``farmhand join --foreground`` (so --leave can stop it first)."""
        return self.dir / "foreground.pid"

    def joined(self) -> bool:
        return self.state.is_file()
