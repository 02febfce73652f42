"""Every path farmhand uses on a farm host, defined once (host files, deploys, checks)."""

NEBULA_DIR = "/etc/nebula/farmhand"
NEBULA_CONFIG = f"{NEBULA_DIR}/config.yml"
NEBULA_CA = f"{NEBULA_DIR}/ca.crt"
NEBULA_CERT = f"{NEBULA_DIR}/host.crt"
NEBULA_KEY = f"{NEBULA_DIR}/host.key"
NEBULA_POOL = f"{NEBULA_DIR}/pool"
FARMHAND_ETC = "/etc/farmhand"
FARMHAND_LIB = "/usr/local/lib/farmhand"
SYSTEMD_DIR = "/etc/systemd/system"
SECRET_UPLOADS = "/var/lib/farmhand/uploads"  # noqa: S105 - a folder
"""Deploys upload secret files here before the final move: never in a world-readable /tmp."""
SHARES_ROOT = "/srv/farmhand"
MOUNTS_ROOT = "/mnt/farmhand"
DEFAULT_SSH_HOST_KEYS = (
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
)
"""sshd's own default host keys (the ones it uses when no HostKey is configured)."""

# Certificate leases: onhost/leases.py travels to hubs and workers alone, so it keeps its own
# paths (leases.LIB, HUB_POOL, WORKER_CONFIG...); tests/test_leases.py holds them to the above.

# Idle shutdown (workers)
IDLE_SCRIPT = "/usr/local/sbin/farmhand-idle"
IDLE_ENV = f"{FARMHAND_ETC}/idle.env"
IDLE_LOCAL_ENV = f"{FARMHAND_ETC}/idle.local.env"
"""Per-worker overrides: never written by a deploy, read after the farm's file."""

# The render queue
OPT = "/opt/farmhand"
FETCH = f"{FARMHAND_LIB}/fetch-artifact"
"""The artifact fetcher (templates/queue/fetch-artifact.py.j2)."""
QUEUE_ETC = f"{FARMHAND_ETC}/queue"
INSTALLERS = f"{SHARES_ROOT}/farm/installers"
"""The hub's cache of pinned artifacts (the ``installers`` folder of the ``farm`` share)."""
LOCAL_CACHE = "/var/lib/farmhand/artifacts"
"""Where workers keep the copy of an artifact they took from the hub."""
MONGODB_DATA = "/var/lib/farmhand-mongodb"
MONGODB_RUN = "/run/farmhand-mongodb"
DEADLINE_PREFIX = "/opt/Thinkbox/Deadline10"
REPOSITORY_DIR = f"{SHARES_ROOT}/queue"
"""The Deadline Repository: the hub's ``queue`` share."""
CLIENT_PFX = f"{QUEUE_ETC}/client.pfx"
"""The Deadline clients' certificate for the database (PKCS#12)."""
DEADLINE_HOME = "/var/lib/farmhand/deadline"
"""The Deadline worker's home (the farm user's, for deadlineworker)."""
FLAMENCO_MANAGER_DIR = "/var/lib/farmhand/flamenco-manager"
FLAMENCO_WORKER_DIR = "/var/lib/farmhand/flamenco-worker"
