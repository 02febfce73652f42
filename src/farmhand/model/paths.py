"""Every path farmhand uses on a farm host, defined once (host files, deploys, checks)."""

FARMHAND_ETC = "/etc/farmhand"
FARMHAND_LIB = "/usr/local/lib/farmhand"
FARMHAND_STATE = "/var/lib/farmhand"
"""What deploys remember on the host (stamps of what they last applied), and services' state."""
SYSTEMD_DIR = "/etc/systemd/system"
SECRET_UPLOADS = f"{FARMHAND_STATE}/uploads"
"""Root logins upload secrets here (root-only, never a world-readable /tmp) before the final
move; a sudo login drops them in its own folder beside it (deploy/tasks/files.py)."""
FARM_JSON = f"{FARMHAND_ETC}/farm.json"
"""What tools on the host (status, verify, the picker) know about the farm, without secrets."""

# Nebula
NEBULA_DIR = "/etc/nebula/farmhand"
NEBULA_CONFIG = f"{NEBULA_DIR}/config.yml"
NEBULA_CA = f"{NEBULA_DIR}/ca.crt"
NEBULA_CERT = f"{NEBULA_DIR}/host.crt"
NEBULA_KEY = f"{NEBULA_DIR}/host.key"
NEBULA_POOL = f"{NEBULA_DIR}/pool"

# The host firewall
NFTABLES_CONF = f"{FARMHAND_ETC}/nftables.conf"
FIREWALLD_ZONE = "/etc/firewalld/zones/farmhand-overlay.xml"

# sshd
SSHD_CONFIG = "/etc/ssh/sshd_config"
SSHD_DROPIN_DIR = "/etc/ssh/sshd_config.d"
SSHD_DROPIN = f"{SSHD_DROPIN_DIR}/00-farmhand.conf"
"""Key-only logins; first in the folder, because sshd keeps the first value it reads
(model/sshd.py)."""
OLD_SSHD_DROPIN = f"{SSHD_DROPIN_DIR}/50-farmhand.conf"
"""Where older deploys put it, after Ubuntu's 50-cloud-init.conf (deploys remove it)."""
LEASE_DROPIN = f"{SSHD_DROPIN_DIR}/40-farmhand-lease.conf"
"""The hub's extra host key for the certificate leases."""
DEFAULT_SSH_HOST_KEYS = (
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
)
"""sshd's own default host keys (the ones it uses when no HostKey is configured)."""

# Certificate leases: onhost/leases.py travels to hubs and workers alone, so it keeps its own
# paths (leases.LIB, HUB_POOL, WORKER_CONFIG...); tests/test_leases.py holds them to the above.
OLD_PICKER = f"{FARMHAND_LIB}/pick-cert"
"""The hostname-only certificate picker the leases replaced (deploys remove it)."""

# Shares: Samba on the hub, mounts on workers
SHARES_ROOT = "/srv/farmhand"
MOUNTS_ROOT = "/mnt/farmhand"
SMB_CONF = "/etc/samba/smb.conf"
WAIT_OVERLAY = f"{FARMHAND_LIB}/wait-overlay"
SMB_PASSWORD = f"{FARMHAND_ETC}/smb.password"
SMB_PASSWORD_STAMP = f"{FARMHAND_STATE}/smb-password.sha256"
SMB_CREDENTIALS = f"{FARMHAND_ETC}/smb-credentials"
"""This host's own share login (a worker's: its certificate's, chosen at boot)."""
SMB_WORKER_PASSWORDS = f"{FARMHAND_ETC}/smb-workers.passwords"
"""The hub's list of worker accounts and their passwords (``NAME PASSWORD`` lines, 0600)."""
SMB_WORKERS_STAMP = f"{FARMHAND_STATE}/workers-smb-password.sha256"

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
INSTALLERS = f"{FARMHAND_STATE}/installers"
"""The hub's cache of pinned artifacts: root's alone (0700), outside the shares, so what root
unpacks and runs there is what root put there."""
PUBLISHED_INSTALLERS = f"{SHARES_ROOT}/installers"
"""Root-owned 0644 copies of the hub's cache: the read-only ``installers`` share workers read."""
OLD_INSTALLERS = f"{SHARES_ROOT}/farm/installers"
"""Where the cache was, inside the writable ``farm`` share (deploys remove it)."""
LOCAL_CACHE = f"{FARMHAND_STATE}/artifacts"
"""Root's own folder (0700) for the copies a host takes, and unpacks or runs after checking
their sha256: a worker's artifacts from the hub, the nebula archive, Deadline's installers."""
MONGODB_DATA = "/var/lib/farmhand-mongodb"
MONGODB_RUN = "/run/farmhand-mongodb"
MONGODB_USER_STAMP = f"{FARMHAND_STATE}/mongodb-user.sha256"
DEADLINE_PREFIX = "/opt/Thinkbox/Deadline10"
REPOSITORY_DIR = f"{SHARES_ROOT}/queue"
"""The Deadline Repository: the hub's ``queue`` share."""
CLIENT_PFX = f"{QUEUE_ETC}/client.pfx"
"""The Deadline clients' certificate for the database (PKCS#12)."""
DEADLINE_HOME = f"{FARMHAND_STATE}/deadline"
"""The Deadline worker's home (the farm user's, for deadlineworker)."""
FLAMENCO_MANAGER_DIR = f"{FARMHAND_STATE}/flamenco-manager"
FLAMENCO_WORKER_DIR = f"{FARMHAND_STATE}/flamenco-worker"

# Cloud-init (a new cloud machine bootstrapping itself)
PASSPHRASE_DIR = "/root/.farmhand"  # noqa: S105 - a folder
PASSPHRASE_PATH = f"{PASSPHRASE_DIR}/passphrase"
RUNNER_PATH = "/usr/local/sbin/farmhand-cloud-bootstrap"
