"""Every path farmhand uses on a farm host, defined once (host files, deploys, checks)."""

NEBULA_DIR = "/etc/nebula/farmhand"
NEBULA_CONFIG = f"{NEBULA_DIR}/config.yml"
NEBULA_CA = f"{NEBULA_DIR}/ca.crt"
NEBULA_CERT = f"{NEBULA_DIR}/host.crt"
NEBULA_KEY = f"{NEBULA_DIR}/host.key"
NEBULA_POOL = f"{NEBULA_DIR}/pool"
FARMHAND_ETC = "/etc/farmhand"
FARMHAND_LIB = "/usr/local/lib/farmhand"
SHARES_ROOT = "/srv/farmhand"
MOUNTS_ROOT = "/mnt/farmhand"
DEFAULT_SSH_HOST_KEYS = (
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
)
"""sshd's own default host keys (the ones it uses when no HostKey is configured)."""
