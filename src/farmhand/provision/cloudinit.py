"""``farmhand cloud-init``: user-data that turns a new cloud machine into a farm host unattended.

It runs the same one-liner a person would paste (bootstrap.sh), so there is one way in. The
passphrase is only put into the user-data when the user hands over a passphrase file for that
purpose; otherwise the machine waits for the file to be placed on it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from farmhand.errors import UsageError
from farmhand.hostfiles.base import expand_text
from farmhand.keystore.plan import Role, validate_hub_address
from farmhand.model.paths import PASSPHRASE_DIR, PASSPHRASE_PATH, RUNNER_PATH
from farmhand.provision.bundle_source import direct_url

DEFAULT_SCRIPT_URL = "https://raw.githubusercontent.com/farmhand-dev/farmhand/main/bootstrap.sh"
WAIT_MINUTES = 60
_PRINTABLE = re.compile(r"[!-~]+")  # visible ASCII, no spaces: safe inside the YAML block


@dataclass(frozen=True)
class CloudInitRequest:
    """What the user-data should do."""

    role: Role
    bundle_url: str
    hub_address: str = ""
    passphrase: str | None = None
    source: str = ""
    script_url: str = DEFAULT_SCRIPT_URL


def _checked(what: str, value: str) -> str:
    if not _PRINTABLE.fullmatch(value):
        raise UsageError(f"{what} must be one word of visible characters: {value!r}")
    return value


def user_data(request: CloudInitRequest) -> str:
    """The ``#cloud-config`` document for ``request``."""
    if request.role is Role.BOSS:
        raise UsageError("cloud-init is for hubs and workers; a boss joins with 'farmhand deploy'")
    bundle_url = _checked("the bundle URL", request.bundle_url)
    direct_url(bundle_url)  # https, and a share link that can be converted
    script_url = _checked("the bootstrap.sh URL", request.script_url)
    if not script_url.startswith("https://"):
        raise UsageError(f"bootstrap.sh must come over https: {script_url}")
    args = [request.role.value, "--bundle", bundle_url, "--passphrase-file", PASSPHRASE_PATH]
    if request.hub_address:
        args += ["--hub-address", validate_hub_address(request.hub_address)]
    source = _checked("the farmhand source", request.source) if request.source else ""
    if request.passphrase is not None and not request.passphrase:
        raise UsageError("the passphrase file is empty")
    return expand_text(
        "cloud-init/user-data.yaml.j2",
        role=request.role.value,
        script_url=script_url,
        script_url_sh=shlex.quote(script_url),
        bootstrap_args=" ".join(shlex.quote(a) for a in args),
        source_sh=shlex.quote(source) if source else "",
        passphrase_yaml=json.dumps(request.passphrase + "\n") if request.passphrase else "",
        passphrase_dir=PASSPHRASE_DIR,
        passphrase_path=PASSPHRASE_PATH,
        passphrase_path_sh=shlex.quote(PASSPHRASE_PATH),
        runner_path=RUNNER_PATH,
        wait_minutes=WAIT_MINUTES,
    )
