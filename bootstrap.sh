#!/bin/sh
# farmhand one-line bootstrap: make THIS machine the farm's hub or one of its workers.
#
#   curl -fsSL https://raw.githubusercontent.com/farmhand-dev/farmhand/main/bootstrap.sh \
#     | sudo sh -s -- worker --bundle URL|PATH [--hub-address HOST] [--passphrase-file FILE]
#
# Installs Python 3 and its venv module (apt or dnf), farmhand into a venv (/opt/farmhand), then
# runs `farmhand bootstrap ROLE ...` with the arguments given here, which checks the bundle and
# the passphrase before it changes anything, then runs the role's deploy on this machine.
# Running it again is safe: what is already there is kept, farmhand is upgraded.
#
# Environment: FARMHAND_SOURCE  what to pip install instead of PyPI's "farmhand" (a path, a
#                                wheel, or a VCS URL such as git+https://...)
#              FARMHAND_VENV    where the venv goes (default /opt/farmhand)
#              FARMHAND_PASSPHRASE, PIP_* (e.g. PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR) pass through.
set -eu

VENV=${FARMHAND_VENV:-/opt/farmhand}
SOURCE=${FARMHAND_SOURCE:-farmhand}
LOG=${FARMHAND_BOOTSTRAP_LOG:-/var/log/farmhand-bootstrap.log}
USAGE="curl -fsSL URL | sudo sh -s -- hub|worker --bundle URL|PATH [--hub-address HOST]"

say() { printf 'bootstrap.sh: %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
logged_failure() { # the last line pip or apt printed, for the one-line error
    tail -n 1 "$LOG" 2>/dev/null | cut -c1-200
}

case "${1:-}" in
    hub | worker) ;;
    "" | -h | --help) die "usage: $USAGE" ;;
    *) die "the first argument is hub or worker, not '$1' (usage: $USAGE)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "bootstrap.sh changes this whole machine and must run as root (pipe it to sudo sh -s -- ...)"
[ "$(uname -s)" = Linux ] || die "farmhand hubs and workers run Linux, not $(uname -s)"

if command -v apt-get >/dev/null 2>&1; then
    manager=apt
elif command -v dnf >/dev/null 2>&1; then
    manager=dnf
else
    die "found neither apt-get nor dnf: farmhand sets up Debian, Ubuntu, AlmaLinux and Rocky"
fi
: >>"$LOG" || die "cannot write the log $LOG"

# A python3 of at least 3.10 (farmhand's minimum), by name.
python_ok() {
    command -v "$1" >/dev/null 2>&1 \
        && "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}
find_python() {
    for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
        if python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

python=""
if [ "$manager" = apt ]; then
    # Debian/Ubuntu split venv and ensurepip off into python3-venv.
    if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed'; then
        say "installing python3 and python3-venv (apt)"
        export DEBIAN_FRONTEND=noninteractive
        apt_install="apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300"
        # Try the local package index first (offline sites); refresh it only if that fails.
        $apt_install python3 python3-venv >>"$LOG" 2>&1 \
            || { apt-get update -q >>"$LOG" 2>&1 && $apt_install python3 python3-venv >>"$LOG" 2>&1; } \
            || die "installing python3-venv failed: $(logged_failure) (see $LOG)"
    fi
    python=$(find_python) || die "no python3 of version 3.10 or newer on this machine"
else
    if ! python=$(find_python); then
        say "installing python3 (dnf)"
        # EL 8 and 9 ship an older python3 as the default; python3.11 sits beside it.
        dnf install -y -q python3 >>"$LOG" 2>&1 || die "installing python3 failed (see $LOG)"
        python=$(find_python) || { dnf install -y -q python3.11 >>"$LOG" 2>&1 && python=$(find_python); } \
            || die "no python3 of version 3.10 or newer: installing python3.11 failed (see $LOG)"
    fi
fi

if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
    say "creating the venv $VENV"
    "$python" -m venv --clear "$VENV" >>"$LOG" 2>&1 || die "creating the venv $VENV failed (see $LOG)"
fi
say "installing farmhand from $SOURCE into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$SOURCE" >>"$LOG" 2>&1 \
    || die "installing farmhand from $SOURCE failed: $(logged_failure) (see $LOG)"
ln -sf "$VENV/bin/farmhand" /usr/local/bin/farmhand

# Run under `curl | sh`, our stdin is the script: give farmhand the terminal to ask on.
if [ ! -t 0 ] && (: </dev/tty) 2>/dev/null; then
    exec "$VENV/bin/farmhand" bootstrap "$@" </dev/tty
fi
exec "$VENV/bin/farmhand" bootstrap "$@"
