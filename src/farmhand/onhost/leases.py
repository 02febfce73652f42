"""Worker certificate leases: the hub is the single authority over who holds which certificate.

Every worker carries the whole workers bundle, but Nebula has no protection against two hosts
presenting one address (the lighthouse takes the newer one, the first goes silently unreachable:
seen on nebula 1.11.0), so a worker never chooses by itself: at boot it claims a
certificate from the hub, renews the lease while it lives and releases it at a clean shutdown.
A lease that is not renewed ends after the farm's ``lease_ttl``, so a terminated spot instance
frees its certificate on its own.

The claim path is OpenSSH: the workers bundle carries a claim key that the hub's sshd accepts
only for one forced command (``restrict,command=…`` in the authorized_keys of the unprivileged
``farmhand-lease`` user), and workers pin the hub's extra ECDSA P-384 host key from the key store.
No new port, nothing in clear, no unauthenticated party can claim.

Every worker has the claim key, so the service assumes that a caller may misbehave:

- one source address (sshd's ``SSH_CONNECTION``, an IPv6 address by its /64) holds at most
  ``per_source`` certificates at once (farm.toml ``lease_per_source``; default half the pool,
  rounded up) and brings at most ``per_source`` machines the hub has never seen per TTL, so
  random machine ids cannot drain the pool (a renewal of a free certificate is a claim too);
- a host named ``workerNNNN`` never takes that certificate from a live holder (one that
  renews within its TTL): it waits like any other;
- a refusal names nothing but what was asked: no other machine, hostname or certificate;
- a session has SESSION_SECONDS to send its request (at most MAX_REQUEST bytes) and
  SESSION_LIMIT in all.

This one file is the whole protocol. farmhand imports it (tests, ``farmhand status``, hostfiles);
the deploys install it unchanged as ``/usr/local/lib/farmhand/leases.py`` on the hub, where
``leases.py serve`` is the forced command, and on workers, where ``pick``, ``renew`` and
``release`` run from systemd units. So it uses only the standard library and runs on Python 3.6
(EL 8's python3): no dataclasses, no postponed annotations.

The table (hub: ``/var/lib/farmhand-lease/table/leases.json``; published read-only on the farm share
as ``.farmhand/leases.json``)::

    {"updated": UNIX, "ttl": SECONDS, "leases": [{"name": "worker0003", "ip": "10.87.99.3",
      "machine": "<identity hash>", "hostname": "…", "since": UNIX, "renewed": UNIX,
      "expires": UNIX}]}

The hub keeps ended leases in its own copy (so a machine that comes back gets its old
certificate if it is still free); the published copy lists live leases only, plus, when they
apply, ``write_error`` and ``disk_full`` (the hub cannot save its table), ``table_error`` (nor
read it) and ``grants_paused_until``/``grants_paused_why`` (no new certificate until then).

No certificate is ever held twice, even on a full or failing disk:

- the table is written by durable_write (a temporary file in the same folder written in full
  and checked, fsync, rename, fsync of the folder), so it is the old table or the new one,
  never part; the table it replaces stays as ``leases.json.prev``. Nothing is answered ok
  before it is on disk, except the renewal below;
- a renewal that cannot be saved is answered ok (full TTL) when the table on disk, with the
  renewals already answered that way, shows the lease live and held by this very boot, and
  the renewal is in the journal ``leases.json.unsaved``: a file of a fixed size made while
  there is room, rewritten in place (no new space) and folded into the table by the next
  request. So live workers keep their leases however long the disk stays full, and no grant
  can be made on a table that misses a renewal. Grants and releases that cannot be saved are
  refused (``hub-disk``). The condition goes to the journal (syslog tag farmhand-lease) and
  into the published copy (rewritten in place if no new file fits);
- a table that cannot be read is never replaced by an empty one: ``.prev`` is used instead
  and no certificate is granted for one TTL (the lost table may have granted a lease
  ``.prev`` lacks; every such holder renews, or its lease ends, within a TTL), while
  renewals of leases ``.prev`` shows this very boot holding are answered. With no readable
  copy at all, nothing is granted or renewed until a TTL after the files were last written
  (their mtime), when every lease they could hold has ended; only then does an empty table
  start. Damaged files are kept as ``.damaged-UNIX``.
"""

import contextlib
import errno
import fcntl
import grp
import hashlib
import ipaddress
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import syslog
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

FORMAT = 1
LEASE_USER = "farmhand-lease"
LIB = "/usr/local/lib/farmhand/leases.py"
LEASE_HOME = "/var/lib/farmhand-lease"
"""The lease user's home: root's, so the lease user cannot change its own authorized_keys."""
HUB_STATE_DIR = LEASE_HOME + "/table"
HUB_TABLE = HUB_STATE_DIR + "/leases.json"
HUB_LOCK = HUB_STATE_DIR + "/lock"
HUB_POOL = "/etc/farmhand/lease-pool.json"
PUBLISHED_DIR = "/srv/farmhand/farm/.farmhand"
PUBLISHED = PUBLISHED_DIR + "/leases.json"
WORKER_CONFIG = "/etc/farmhand/lease.json"
WORKER_DIR = "/etc/farmhand/lease"
CLAIM_KEY = WORKER_DIR + "/claim.key"
KNOWN_HOSTS = WORKER_DIR + "/known_hosts"
HOST_KEY_ALIAS = "farmhand-hub"
HOST_KEY_ALGORITHM = "ecdsa-sha2-nistp384"
HUB_HOST_KEY = "/etc/ssh/farmhand_lease_host_key"
LEASE_AUTHORIZED_KEYS = LEASE_HOME + "/.ssh/authorized_keys"
WORKER_STATE = "/run/farmhand/lease.json"
DEFAULT_TTL = 180
MIN_TTL = 6
MAX_REQUEST = 4096
RETRY_SECONDS = 5.0
REPEAT_LOG_SECONDS = 60.0
HUB_LOG_TAG = "farmhand-lease"
JOURNAL_SUFFIX = ".unsaved"
JOURNAL_ENTRY = 200
"""Bytes the journal of unsaved renewals keeps for each certificate of the pool."""
SESSION_SECONDS = 10.0
"""How long the lease service waits for a whole request on stdin before it hangs up."""
SESSION_LIMIT = 30
"""Seconds one lease session may last in all (reading, waiting for the lock, answering)."""

# Whole-string patterns, used with fullmatch only: match() with "$" accepts a final newline.
_MACHINE = re.compile(r"[0-9a-f]{16,64}")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_WORKER_NAME = re.compile(r"worker[0-9]{4,}")

Table = Dict[str, Any]
Lease = Dict[str, Any]


class Refused(Exception):
    """The hub cannot grant what was asked; ``reason`` is a stable word, the text says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- the table (pure functions: the hub applies them under its lock) -----------------------


def empty_table(ttl: int, now: int) -> Table:
    return {"format": FORMAT, "updated": now, "ttl": ttl, "leases": []}


def parse_table(text: str) -> Table:
    """A table from its JSON; raises ValueError when it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("leases"), list):
        raise ValueError("not a farmhand lease table")
    for lease in data["leases"]:
        for key in ("name", "machine", "since", "renewed", "expires"):
            if key not in lease:
                raise ValueError("a lease lacks " + key)
    return data


def live(table: Table, now: int) -> List[Lease]:
    """Leases that have not ended, by certificate name."""
    return sorted((x for x in table["leases"] if x["expires"] > now), key=lambda x: x["name"])


def published(table: Table, now: int) -> Table:
    """What ``farmhand status`` and bosses read: live leases only."""
    leases = [
        {k: x[k] for k in ("name", "ip", "machine", "hostname", "since", "renewed", "expires")}
        for x in live(table, now)
    ]
    return {"updated": table["updated"], "ttl": table["ttl"], "leases": leases}


def _usable(pool: List[Dict[str, Any]], now: int) -> Dict[str, Dict[str, Any]]:
    """Pool entries whose certificate has not expired, by name."""
    return {p["name"]: p for p in pool if int(p.get("not_after", now + 1)) > now}


def _record(table: Table, name: str) -> Optional[Lease]:
    leases = table["leases"]  # type: List[Lease]
    for lease in leases:
        if lease["name"] == name:
            return lease
    return None


def _ours(lease: Lease, machine: str, boot: str) -> bool:
    """A lease belongs to one boot of one machine: a clone that shares the identity of another
    (or the same machine after a crash) never takes over a live lease, it waits for its end."""
    return bool(lease["machine"] == machine and lease.get("boot", "") == boot)


def default_per_source(pool_size: int) -> int:
    """How many certificates one source may hold at once unless farm.toml says (half the pool,
    rounded up): one address can never take the whole pool."""
    return max(1, (pool_size + 1) // 2)


def source_of(environ: Dict[str, str]) -> str:
    """Where a request comes from, as sshd tells the forced command (SSH_CONNECTION, else
    SSH_CLIENT): an IPv4 address, or the /64 of an IPv6 address (one host usually has a whole
    /64 to pick addresses from). '' when not run by sshd: a caller on the hub itself, which
    no bound applies to (it could edit the table anyway)."""
    words = (environ.get("SSH_CONNECTION") or environ.get("SSH_CLIENT") or "").split()
    text = words[0].split("%")[0] if words else ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(text + "/64", strict=False))
    return str(address)


def _check_source(
    table: Table, machine: str, boot: str, source: str, per_source: int, now: int, ttl: int
) -> None:
    """Refused('limit') when ``source`` holds ``per_source`` live leases already (other than
    this boot's own), or brought ``per_source`` machines the hub had never seen within a TTL."""
    if per_source <= 0 or not source:
        return
    held = [x for x in live(table, now) if x.get("source") == source]
    held = [x for x in held if not _ours(x, machine, boot)]
    where = ("network " if "/" in source else "address ") + source
    if len(held) >= per_source:
        raise Refused(
            "limit",
            f"this {where} already holds {len(held)} worker certificate(s), the most one address "
            "may hold at once (lease_per_source in farm.toml): waiting until one of its leases "
            "ends",
        )
    if not any(x["machine"] == machine for x in table["leases"]):
        recent = [t for t in table.get("sources", {}).get(source, []) if t > now - ttl]
        if len(recent) >= per_source:
            raise Refused(
                "limit",
                f"this {where} brought {len(recent)} new machines to the hub within {ttl} s, the "
                "most it may (lease_per_source in farm.toml): trying again later",
            )


def _grant(
    table: Table,
    entry: Dict[str, Any],
    machine: str,
    boot: str,
    hostname: str,
    now: int,
    ttl: int,
    by_name: bool = False,
    source: str = "",
    per_source: int = 0,
) -> Lease:
    lease = _record(table, entry["name"])
    fresh = lease is None or not _ours(lease, machine, boot) or lease["expires"] <= now
    if fresh:
        paused = int(table.get("grants_paused_until", 0))
        if now < paused:
            raise Refused(
                "paused",
                "{}: it grants no certificate until {}, when every lease it may not know of "
                "has ended or been renewed".format(
                    table.get("grants_paused_why") or "the hub's lease table was damaged",
                    _when(paused),
                ),
            )
        _check_source(table, machine, boot, source, per_source, now, ttl)
        if source and not any(x["machine"] == machine for x in table["leases"]):
            table.setdefault("sources", {}).setdefault(source, []).append(now)
    for other in table["leases"]:  # one certificate per running machine: its others end
        if _ours(other, machine, boot) and other["name"] != entry["name"]:
            other["expires"] = min(other["expires"], now)
    if lease is None or fresh:
        table["leases"] = [x for x in table["leases"] if x["name"] != entry["name"]]
        lease = {"name": entry["name"], "ip": str(entry["ip"]), "since": now}
        table["leases"].append(lease)
    lease.update(machine=machine, boot=boot, hostname=hostname, renewed=now, expires=now + ttl)
    lease["by_name"] = by_name
    lease["source"] = source
    lease.pop("evict", None)  # marks an older hub left: nobody is moved off a live lease now
    lease.pop("evicted", None)
    lease["ip"] = str(entry["ip"])
    table["leases"].sort(key=lambda x: x["name"])
    table["updated"] = now
    table["ttl"] = ttl
    return dict(lease)


def _when(stamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def claim(
    table: Table,
    pool: List[Dict[str, Any]],
    machine: str,
    boot: str,
    hostname: str,
    want: str,
    now: int,
    ttl: int,
    source: str = "",
    per_source: int = 0,
) -> Lease:
    """Give ``machine`` a certificate: ``want`` if named (a workerNNNN hostname), else any free
    one, preferring the one it held last. Raises Refused when it must wait.

    A refusal names nothing but what was asked: never another machine, its hostname or
    which certificate it holds (every worker has the claim key, so anyone may ask)."""
    usable = _usable(pool, now)
    held = {x["name"]: x for x in live(table, now)}
    limits = {"source": source, "per_source": per_source}  # type: Dict[str, Any]
    if want:
        if want not in usable:
            raise Refused(
                "unknown",
                f"the hub's pool has no usable certificate {want} (not in the workers bundle, "
                "revoked or expired)",
            )
        # A host named like the certificate waits like any other: a live holder (one that
        # renews) is never moved off it, whatever the asking host calls itself.
        holder = held.get(want)
        if holder is not None and not _ours(holder, machine, boot):
            raise Refused(
                "taken",
                "{} is held by {} until {} unless that lease is renewed; this host waits for "
                "it".format(
                    want,
                    "an earlier boot of this machine (or a clone with its machine-id and MAC)"
                    if holder["machine"] == machine
                    else "another live machine",
                    _when(holder["expires"]),
                ),
            )
        return _grant(
            table, usable[want], machine, boot, hostname, now, ttl, by_name=True, **limits
        )
    mine = [x for x in held.values() if _ours(x, machine, boot) and x["name"] in usable]
    if mine:
        return _grant(table, usable[mine[0]["name"]], machine, boot, hostname, now, ttl, **limits)
    free = [name for name in usable if name not in held]
    if not free:
        soonest = min((x["expires"] for x in held.values()), default=0)
        raise Refused(
            "exhausted",
            "the pool is exhausted: all {} worker certificates are held by live machines{}".format(
                len(usable),
                f"; the first lease to end unless renewed ends at {_when(soonest)}"
                if soonest
                else "",
            ),
        )

    # This machine's last certificate if it is free; otherwise the highest number: hosts named
    # workerNNNN (oomerfarm's way) tend to use the low ones, so other clones rarely stand in
    # their way.
    own = [n for n in free if (_record(table, n) or {}).get("machine") == machine]
    ranked = own or sorted(free, reverse=True)
    return _grant(table, usable[ranked[0]], machine, boot, hostname, now, ttl, **limits)


def renew(
    table: Table,
    pool: List[Dict[str, Any]],
    machine: str,
    boot: str,
    name: str,
    hostname: str,
    now: int,
    ttl: int,
    source: str = "",
    per_source: int = 0,
) -> Lease:
    """Extend ``machine``'s lease of ``name``; Refused('lost') when another machine has it.
    A lease that had already ended and that nobody took is granted again, marked ``lapsed``:
    the worker ran without a lease for a while (suspended, paused, cut off) and starts over."""
    usable = _usable(pool, now)
    if name not in usable:
        raise Refused(
            "unknown",
            f"the hub's pool no longer has {name} (revoked or expired): re-deploy this worker",
        )
    lease = _record(table, name)
    if lease is not None and lease["expires"] > now:
        if not _ours(lease, machine, boot):
            raise Refused("lost", f"{name} is now held by another machine")
        if lease.get("evicted"):  # an older hub told this worker to move: it has been told
            raise Refused("lost", f"{name} was handed to a host of that name")
    held = lease is not None and _ours(lease, machine, boot) and lease["expires"] > now
    by_name = bool(held and lease is not None and lease.get("by_name"))
    granted = _grant(
        table,
        usable[name],
        machine,
        boot,
        hostname,
        now,
        ttl,
        by_name=by_name,
        source=source,
        per_source=per_source,
    )
    if not held:
        granted["lapsed"] = True
    return granted


def release(table: Table, machine: str, boot: str, name: str, now: int) -> bool:
    """End ``machine``'s lease of ``name`` (only its own); True when one ended."""
    lease = _record(table, name)
    if lease is None or not _ours(lease, machine, boot) or lease["expires"] <= now:
        return False
    lease["expires"] = now
    lease["renewed"] = now
    table["updated"] = now
    return True


# --- the hub: the forced command of the claim key -------------------------------------------


def durable_write(path: str, data: bytes, mode: int, keep_previous: bool = False) -> None:
    """Make ``path`` hold all of ``data`` or, should anything fail, exactly what it held before:
    a temporary file in the same folder, written in full (every short write continued, the
    length checked), flushed to disk, renamed over ``path``, then the folder flushed. With
    ``keep_previous`` the file it replaces stays as ``path.prev`` (a hard link: no copy, no
    space; skipped if the link cannot be made). Raises OSError, having removed its temporary
    file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            done = 0
            while done < len(data):
                written = os.write(fd, view[done:])
                if written <= 0:
                    raise OSError(errno.ENOSPC, "short write", tmp)
                done += written
            os.fsync(fd)
            if os.fstat(fd).st_size != len(data):
                raise OSError(errno.EIO, "the file is not as long as written", tmp)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        if keep_previous and os.path.exists(path):
            # Best effort: a .prev that lags behind is only older, never wrong.
            link = f"{path}.prev.{os.getpid()}.tmp"
            try:
                os.link(path, link)
                os.replace(link, path + ".prev")
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(link)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def overwrite_in_place(path: str, data: bytes) -> None:
    """Rewrite the existing ``path`` with ``data`` inside the space it already has on disk, for
    when no new file can be written (a full disk): raises OSError when it does not fit. Not
    atomic, so only for files that can be read torn (the published copy) or that are never
    longer than one block (the journal)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        info = os.fstat(fd)
        if len(data) > max(info.st_size, info.st_blocks * 512):
            raise OSError(errno.ENOSPC, "does not fit in the space the file has", path)
        if os.pwrite(fd, data, 0) != len(data):
            raise OSError(errno.ENOSPC, "short write", path)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def _dump(table: Table) -> bytes:
    return (json.dumps(table, indent=1, sort_keys=True) + "\n").encode()


def _copy(table: Table) -> Table:
    return dict(json.loads(json.dumps(table)))


def _syslog(text: str) -> None:
    syslog.openlog(HUB_LOG_TAG, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_WARNING, text)


def _hub_log(text: str) -> None:
    """To the hub's journal (syslog, tag farmhand-lease) and the service's stderr."""
    with contextlib.suppress(OSError, ValueError):
        _syslog(text)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{HUB_LOG_TAG}: {text}\n")
        sys.stderr.flush()


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


# The journal of renewals the hub answered but could not save (TABLE.unsaved): a file of a fixed
# size, made while the disk has room, and rewritten in place (no new space) when it has none.


def journal_size(pool_size: int) -> int:
    return max(4096, -(-(JOURNAL_ENTRY * pool_size + 64) // 4096) * 4096)


def _journal_bytes(entries: List[List[Any]], size: int) -> bytes:
    text = json.dumps({"renewed": sorted(entries)}, sort_keys=True)
    if len(text) + 1 > size:
        raise OSError(errno.ENOSPC, "the journal of unsaved renewals is full")
    return (text + " " * (size - len(text) - 1) + "\n").encode()


def read_journal(path: str) -> List[List[Any]]:
    """[[name, machine, boot, renewed], …]; [] when there is none; ValueError when damaged."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ValueError(_why(exc)) from None
    entries = data.get("renewed") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, list) and len(e) == 4 and isinstance(e[3], int) for e in entries
    ):
        raise ValueError("not a journal of unsaved renewals")
    return entries


def _journal_add(path: str, entry: List[Any]) -> None:
    entries = [e for e in read_journal(path) if e[0] != entry[0]] + [entry]
    overwrite_in_place(path, _journal_bytes(entries, os.path.getsize(path)))


def _fold(table: Table, entries: List[List[Any]], ttl: int) -> int:
    """Apply the journal's renewals to ``table``: each still names the machine and boot that
    holds the lease, and is newer than what the table says. How many applied."""
    applied = 0
    for name, machine, boot, renewed in entries:
        lease = _record(table, str(name))
        if lease is None or lease["machine"] != machine or lease.get("boot", "") != boot:
            continue
        if renewed > lease["renewed"]:
            lease["renewed"] = renewed
            lease["expires"] = max(lease["expires"], renewed + ttl)
            applied += 1
    return applied


def _mtime(path: str) -> int:
    try:
        return int(os.stat(path).st_mtime) + 1
    except OSError:
        return 0


def _pause(table: Table, until: int, why: str) -> None:
    if until > int(table.get("grants_paused_until", 0)):
        table["grants_paused_until"] = until
        table["grants_paused_why"] = why


class _Unreadable(Exception):
    """Neither the table nor its last good copy can be read: nothing can be granted or
    renewed until ``until``, when every lease either could hold has ended."""

    def __init__(self, message: str, until: int) -> None:
        super().__init__(message)
        self.until = until


def _read_table_file(path: str) -> Optional[Table]:
    """The table in ``path``; None when there is no such file; ValueError when unreadable."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(_why(exc)) from None
    return parse_table(raw.decode("utf-8"))


def load_table(table_path: str, ttl: int, now: int) -> Tuple[Table, bool, int]:
    """The table to work on, its journal of unsaved renewals folded in; whether the file on
    disk is good (so that the next write keeps it as ``.prev``); how many journal entries it
    had (-1: the journal is damaged, and grants wait a TTL after it was last written). Never
    an empty table because a table could not be read:

    - the table unreadable (or gone while ``.prev`` is there): the last good copy, ``.prev``.
      The table it replaces may have granted a lease that ``.prev`` lacks, so for one TTL no
      certificate is granted (``grants_paused_until``): renewals of leases ``.prev`` shows
      this very boot holding are answered, others must wait until their holder renewed (and
      was refused) or its lease ended;
    - both unreadable: _Unreadable until a TTL after the last time either was written (their
      mtime; or the journal's), when every lease they could hold has ended; then an empty
      table, the damaged files kept aside as ``.damaged-NOW``.
    """
    prev_path = table_path + ".prev"
    journal_path = table_path + JOURNAL_SUFFIX
    pauses = []  # type: List[Tuple[int, str]]
    journaled = 0
    try:
        entries = read_journal(journal_path)
        journaled = len(entries)
    except ValueError as exc:
        entries, journaled = [], -1
        until = _mtime(journal_path) + ttl
        _hub_log(
            f"the journal {journal_path} is damaged ({exc}): no new lease until {_when(until)}"
        )
        pauses.append((until, "the hub's journal of unsaved renewals was damaged"))
    problem = ""
    try:
        table = _read_table_file(table_path)
    except ValueError as exc:
        table, problem = None, str(exc) or "unreadable"
    good = table is not None
    if table is None and (problem or os.path.exists(prev_path)):
        problem = problem or "missing"
        try:
            table = _read_table_file(prev_path)
        except ValueError as exc:
            table, problem = None, f"{problem}; its last good copy: {exc or 'unreadable'}"
        if table is None:
            until = max(_mtime(table_path), _mtime(prev_path)) + ttl
            until = max([until] + [int(e[3]) + ttl for e in entries])
            if now < until:
                raise _Unreadable(
                    f"the hub cannot read its lease table ({problem}) nor a good copy of it: "
                    f"it grants and renews nothing until {_when(until)}, when every lease it "
                    "could hold has ended",
                    until,
                )
            for path in (table_path, prev_path):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(path, f"{path}.damaged-{now}")
            _hub_log(
                f"the lease table {table_path} could not be read ({problem}) and every lease "
                "it could hold has ended: starting a new one (the old files are kept as "
                f".damaged-{now})"
            )
            table = empty_table(ttl, now)
        else:
            if os.path.exists(table_path):
                os.replace(table_path, f"{table_path}.damaged-{now}")
            until = now + ttl
            _hub_log(
                f"the lease table {table_path} could not be read ({problem}): restored from "
                f"{prev_path}; no new lease until {_when(until)}"
                + (f" (the damaged one is kept as .damaged-{now})" if problem != "missing" else "")
            )
            pauses.append((until, "the hub restored its lease table from the last good copy"))
    elif table is None:
        table = empty_table(ttl, now)  # the first request ever
    for until, why in pauses:
        _pause(table, until, why)
    _fold(table, entries, ttl)
    return table, good, journaled


def load_pool(path: str = HUB_POOL) -> Dict[str, Any]:
    """The hub's pool (lease-pool.json): ``ttl``, ``pool`` and ``per_source`` (farm.toml's
    lease_per_source, else half the pool)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    pool = list(data["pool"])
    per_source = int(data.get("per_source") or 0) or default_per_source(len(pool))
    return {"ttl": int(data["ttl"]), "pool": pool, "per_source": per_source}


def check_request(request: Any) -> Dict[str, str]:
    """The fields of a worker's request, validated (raises Refused('bad-request'))."""
    if not isinstance(request, dict):
        raise Refused("bad-request", "a request is a JSON object")
    op = request.get("op")
    if op not in ("claim", "renew", "release"):
        raise Refused("bad-request", "op must be claim, renew or release")
    out = {"op": str(op)}
    machine = str(request.get("machine", ""))
    if not _MACHINE.fullmatch(machine):
        raise Refused("bad-request", "machine must be 16-64 lowercase hex digits")
    out["machine"] = machine
    boot = str(request.get("boot", ""))
    if not _MACHINE.fullmatch(boot):
        raise Refused("bad-request", "boot must be 16-64 lowercase hex digits")
    out["boot"] = boot
    hostname = str(request.get("hostname", ""))
    if not _HOSTNAME.fullmatch(hostname):
        hostname = "?"
    out["hostname"] = hostname
    name = str(request.get("name") or "")
    if name and not _NAME.fullmatch(name):
        raise Refused("bad-request", "not a certificate name")
    if op != "claim" and not name:
        raise Refused("bad-request", op + " needs the certificate name")
    out["name"] = name
    return out


def _refusal(reason: str, message: str, ttl: int) -> Dict[str, Any]:
    return {"ok": False, "reason": reason, "message": message, "ttl": ttl}


def _unsaved(
    fields: Dict[str, str],
    answer: Dict[str, Any],
    before: Table,
    error: OSError,
    journal_path: str,
    now: int,
    ttl: int,
) -> Tuple[Dict[str, Any], Table]:
    """The answer, and the table as it now stands, when the table could not be saved.

    The table on disk is still ``before`` (the write kept it whole). A grant or a release is
    refused: what is not on disk did not happen. A renewal of a lease ``before`` shows live
    and held by this very boot is answered ok, with the full TTL, once it is in the journal
    (a few bytes rewritten in place, no new space), which the next request folds in, so
    nobody else can be granted that lease meanwhile. If even the journal cannot be written,
    it is still ok but not extended: the lease ends when ``before`` says."""
    why = _why(error)
    if not answer.get("ok"):
        return answer, before  # a refusal changed nothing that matters
    name = answer["lease"]["name"] if "lease" in answer else fields["name"]
    record = _record(before, name)
    mine = (
        record is not None
        and _ours(record, fields["machine"], fields["boot"])
        and record["expires"] > now
        and not record.get("evicted")
    )
    if fields["op"] == "release":
        return _refusal(
            "hub-disk",
            f"the hub cannot save its lease table ({why}): not released, the lease ends by "
            "itself unless renewed",
            ttl,
        ), before
    if not mine or record is None:
        if fields["op"] == "claim":
            text = "it grants no certificate until it can"
        else:
            text = "it renews only leases it has on record until it can"
        return _refusal("hub-disk", f"the hub cannot save its lease table ({why}): {text}", ttl), (
            before
        )
    view = _copy(before)
    lease = _record(view, name)
    assert lease is not None
    try:
        _journal_add(journal_path, [name, fields["machine"], fields["boot"], now])
    except (OSError, ValueError) as exc:
        warning = (
            f"the hub cannot save its lease table ({why}) nor note this renewal ({_why(exc)}): "
            f"the lease is not extended and ends at {_when(lease['expires'])} unless the hub "
            "can save it by then"
        )
    else:
        lease["renewed"], lease["expires"] = now, now + ttl
        warning = f"the hub cannot save its lease table ({why}): this renewal is in its journal"
    _hub_log(f"{fields['op']} of {name} answered without saving the table: {warning}")
    return {"ok": True, "ttl": ttl, "lease": dict(lease), "warning": warning}, view


def _publish(path: Optional[str], table: Table, now: int, condition: Dict[str, Any]) -> None:
    """The published copy with ``condition`` (write_error, disk_full, table_error,
    grants_paused_until/why: only those that apply); in place when no new file fits."""
    if not path:
        return
    data = published(table, now)
    data.update(condition)
    try:
        durable_write(path, _dump(data), 0o644)
    except OSError as exc:
        try:
            overwrite_in_place(path, _dump(data))
        except OSError as again:
            _hub_log(f"cannot publish {path}: {_why(exc)}; in place: {_why(again)}")


def _remove_temporaries(*paths: Optional[str]) -> None:
    """Temporary files left by a process that died while writing (every writer holds the lock,
    so under it none is in use)."""
    for path in paths:
        if not path:
            continue
        folder, base = os.path.split(path)
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith(base + ".") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))


def handle(
    request: Any,
    *,
    table_path: str = HUB_TABLE,
    lock_path: str = HUB_LOCK,
    pool_path: str = HUB_POOL,
    published_path: Optional[str] = PUBLISHED,
    now: Optional[int] = None,
    source: str = "",
) -> Dict[str, Any]:
    """Apply one request from ``source`` (see source_of) to the table on disk under an
    exclusive lock; the answer as a dict. The table is saved with durable_write (keeping the
    one it replaces as ``.prev``) before any answer says ok; see load_table and _unsaved for
    what happens when it cannot be read or written."""
    try:
        fields = check_request(request)
    except Refused as exc:
        return {"ok": False, "reason": exc.reason, "message": str(exc)}
    config = load_pool(pool_path)
    ttl = config["ttl"]
    journal_path = table_path + JOURNAL_SUFFIX
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        stamp = int(time.time()) if now is None else now
        _remove_temporaries(table_path, journal_path, published_path)
        try:
            table, good, journaled = load_table(table_path, ttl, stamp)
        except _Unreadable as exc:
            _hub_log(str(exc))
            _publish(
                published_path,
                empty_table(ttl, stamp),
                stamp,
                {"table_error": str(exc), "grants_paused_until": exc.until},
            )
            return _refusal("hub-table", str(exc), ttl)
        except OSError as exc:  # say, a damaged table cannot even be moved aside
            _hub_log(f"cannot use the lease table {table_path}: {_why(exc)}")
            return _refusal("hub-disk", f"the hub cannot use its lease table ({_why(exc)})", ttl)
        before = _copy(table)
        answer = {"ok": True, "ttl": ttl}  # type: Dict[str, Any]
        try:
            if fields["op"] == "claim":
                answer["lease"] = claim(
                    table,
                    config["pool"],
                    fields["machine"],
                    fields["boot"],
                    fields["hostname"],
                    fields["name"],
                    stamp,
                    ttl,
                    source=source,
                    per_source=config["per_source"],
                )
            elif fields["op"] == "renew":
                answer["lease"] = renew(
                    table,
                    config["pool"],
                    fields["machine"],
                    fields["boot"],
                    fields["name"],
                    fields["hostname"],
                    stamp,
                    ttl,
                    source=source,
                    per_source=config["per_source"],
                )
            else:
                answer["released"] = release(
                    table, fields["machine"], fields["boot"], fields["name"], stamp
                )
        except Refused as exc:
            answer = _refusal(exc.reason, str(exc), ttl)
        if answer.get("lease", {}).pop("lapsed", False):
            answer["lapsed"] = True
        table["updated"] = stamp
        table["ttl"] = ttl
        # Forget leases that ended over a day ago and whose certificate left the pool, and new
        # machines counted more than a TTL ago.
        names = {p["name"] for p in config["pool"]}
        table["leases"] = [
            x for x in table["leases"] if x["name"] in names or x["expires"] > stamp - 86400
        ]
        recent = {k: [t for t in v if t > stamp - ttl] for k, v in table.get("sources", {}).items()}
        table["sources"] = {k: v for k, v in recent.items() if v}
        if int(table.get("grants_paused_until", 0)) <= stamp:
            table.pop("grants_paused_until", None)
            table.pop("grants_paused_why", None)
        condition = {}  # type: Dict[str, Any]
        try:
            durable_write(table_path, _dump(table), 0o644, keep_previous=good)
        except OSError as exc:
            _hub_log(f"cannot save the lease table {table_path}: {_why(exc)}")
            answer, table = _unsaved(fields, answer, before, exc, journal_path, stamp, ttl)
            condition = {"write_error": _why(exc), "disk_full": _disk_full(exc)}
        else:
            if journaled > 0:
                _hub_log(f"the lease table is saved again, with {journaled} unsaved renewal(s)")
            try:
                size = journal_size(len(config["pool"]))
                if journaled or not os.path.isfile(journal_path):
                    durable_write(journal_path, _journal_bytes([], size), 0o644)
                elif os.path.getsize(journal_path) < size:
                    durable_write(
                        journal_path, _journal_bytes(read_journal(journal_path), size), 0o644
                    )
            except (OSError, ValueError) as exc:
                _hub_log(f"cannot prepare the journal {journal_path}: {_why(exc)}")
        paused = int(table.get("grants_paused_until", 0))
        if paused > stamp:
            condition["grants_paused_until"] = paused
            condition["grants_paused_why"] = table.get("grants_paused_why", "")
        _publish(published_path, table, stamp, condition)
    answer["now"] = stamp  # the worker counts the lease's time from here, on its own clocks
    return answer


class _SessionOver(Exception):
    pass


def _session_over(signum: int, frame: Any) -> None:
    raise _SessionOver()


def read_request(
    fd: int = 0,
    limit: int = MAX_REQUEST,
    seconds: float = SESSION_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """The request on ``fd``, up to its end: at most ``limit`` bytes within ``seconds`` (in all,
    however slowly they trickle in), or Refused."""
    deadline = clock() + seconds
    chunks = []  # type: List[bytes]
    size = 0
    while True:
        left = deadline - clock()
        if left <= 0:
            raise Refused(
                "timeout", f"no complete request within {seconds:.0f} s: the hub hangs up"
            )
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        data = os.read(fd, limit + 1 - size)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        size += len(data)
        if size > limit:
            raise Refused("bad-request", "request too long")


def serve(**paths: Any) -> int:
    """The forced command: one JSON request on stdin (within SESSION_SECONDS), one JSON answer
    on stdout, the whole session within SESSION_LIMIT (``paths`` moves the table elsewhere,
    for tests)."""
    signal.signal(signal.SIGALRM, _session_over)
    signal.alarm(SESSION_LIMIT)
    try:
        try:
            raw = read_request()
            try:
                request = json.loads(raw.decode("utf-8"))
            except ValueError:
                request = None
            answer = handle(request, source=source_of(dict(os.environ)), **paths)
        except Refused as exc:
            answer = {"ok": False, "reason": exc.reason, "message": str(exc)}
        except _SessionOver:
            answer = {
                "ok": False,
                "reason": "busy",
                "message": f"the hub could not answer within {SESSION_LIMIT} s",
            }
        except (OSError, ValueError, KeyError) as exc:  # its lock, folder or pool file
            _hub_log(f"cannot answer: {_why(exc)}")
            answer = {"ok": False, "reason": "hub-error", "message": f"the hub failed: {_why(exc)}"}
    finally:
        signal.alarm(0)
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


# --- workers: pick at boot, renew on a timer, release at shutdown ---------------------------
#
# A worker judges its lease on the wall clock and CLOCK_BOOTTIME (see clocks), from the time the
# hub says it had left (``expires - now`` in the answer, counted from before the request went
# out), never on time.monotonic(), which stops while the machine is suspended or its VM paused:
# a worker that wakes up after its lease ended stops Nebula and claims again, and so does one
# whose renewal the hub answers ``lapsed``.


def _log(text: str) -> None:
    sys.stdout.write("farmhand: " + text + "\n")
    sys.stdout.flush()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def default_route_interface(route_table: str = "/proc/net/route") -> str:
    """The interface of the IPv4 default route, or '' when there is none."""
    for line in _read(route_table).splitlines()[1:]:
        cols = line.split()
        if len(cols) > 2 and cols[1] == "00000000":
            return cols[0]
    return ""


def _mac(name: str, net_dir: str = "/sys/class/net") -> str:
    """The hardware address of interface ``name`` in this network namespace ('' if none).

    Asked of the kernel (SIOCGIFHWADDR), not read from sysfs: a container's /sys may show
    another namespace's cards."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            raw = fcntl.ioctl(sock.fileno(), 0x8927, struct.pack("256s", name[:15].encode()))
        value = ":".join(f"{b:02x}" for b in bytearray(raw[18:24]))
    except OSError:
        value = _read(os.path.join(net_dir, name, "address")).lower()
    return value if value.strip("0:") else ""


def _interfaces(net_dir: str) -> List[str]:
    try:
        return sorted(name for _, name in socket.if_nameindex())
    except OSError:
        try:
            return sorted(os.listdir(net_dir))
        except OSError:
            return []


def machine_identity(
    machine_id_path: str = "/etc/machine-id",
    route_table: str = "/proc/net/route",
    interfaces: Optional[List[str]] = None,
    mac_of: Callable[[str], str] = _mac,
) -> str:
    """sha256 of /etc/machine-id and the MAC of the default-route interface (32 hex digits).

    A snapshot's clones share /etc/machine-id (unless the provider regenerates it), but every
    clone gets its own network card, so the MAC tells them apart; the machine-id keeps two
    machines that happen to reuse a MAC (other networks, other providers) apart. A machine
    with no default route uses its first interface (by name) with a real MAC. Should two
    machines still end up with one identity, leases are also tied to the boot (boot_id): the
    second waits instead of sharing an address.
    """
    machine_id = _read(machine_id_path)
    names = _interfaces("/sys/class/net") if interfaces is None else interfaces
    mac = ""
    for name in [default_route_interface(route_table), *names]:
        if name and name != "lo" and name in names:
            mac = mac_of(name)
            if mac:
                break
    digest = hashlib.sha256(f"{machine_id}\n{mac}\n".encode()).hexdigest()
    return digest[:32]


def boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    """This boot's random id (the kernel's), as 32 hex digits."""
    value = _read(path).replace("-", "").lower()
    return value if _MACHINE.fullmatch(value) else hashlib.sha256(os.urandom(16)).hexdigest()[:32]


def short_hostname() -> str:
    return os.uname()[1].split(".")[0]


def wanted_name(hostname: str, pool_dir: str) -> str:
    """A workerNNNN hostname asks for that certificate (oomerfarm's rule); others for any."""
    if _WORKER_NAME.fullmatch(hostname):
        if os.path.isfile(os.path.join(pool_dir, hostname + ".crt")):
            return hostname
        _log(
            f"hostname {hostname} is not in this worker's pool (not in its workers bundle): "
            "asking the hub for any free certificate"
        )
    return ""


def load_worker_config(path: str = WORKER_CONFIG) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return dict(json.load(handle))


def ssh_argv(config: Dict[str, Any]) -> List[str]:
    """OpenSSH to the hub's forced command: claim key, pinned P-384 host key, no TOFU."""
    return [
        "ssh", "-F", "/dev/null",
        "-i", config["claim_key"],
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + config["known_hosts"],
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HostKeyAlias=" + HOST_KEY_ALIAS,
        "-o", "HostKeyAlgorithms=" + HOST_KEY_ALGORITHM,
        "-o", "UpdateHostKeys=no",
        "-o", "ConnectTimeout={}".format(int(config.get("connect_timeout", 10))),
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=2",
        "-o", "LogLevel=ERROR",
        "-p", str(config["hub_port"]),
        "-l", config["user"],
        config["hub"],
    ]  # fmt: skip


def ask_hub(config: Dict[str, Any], request: Dict[str, Any]) -> Dict[str, Any]:
    """Send one request; an unreachable hub comes back as ``{"ok": False, "reason":
    "unreachable"}`` with ssh's own words."""
    try:
        result = subprocess.run(
            ssh_argv(config),
            input=json.dumps(request).encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=float(config.get("connect_timeout", 10)) + 20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "reason": "unreachable", "message": str(exc)}
    err = result.stderr.decode("utf-8", "replace").strip().splitlines()
    detail = err[-1] if err else f"ssh exit {result.returncode}"
    if result.returncode == 0:
        try:
            answer = json.loads(result.stdout.decode("utf-8"))
            if isinstance(answer, dict):
                return answer
        except ValueError:
            pass
        detail = "the hub answered something that is not a lease answer"
    where = "{}:{}".format(config["hub"], config["hub_port"])
    if any("Permission denied" in line for line in err):
        return {
            "ok": False,
            "reason": "refused",
            "message": f"the hub {where} refused this worker's claim key ({detail}): is the "
            "hub deployed from the same key store?",
        }
    if any("Host key verification failed" in line or "HOST IDENTIFICATION" in line for line in err):
        return {
            "ok": False,
            "reason": "hub-key",
            "message": f"the host at {where} is not the hub: its key does not match the one pinned "
            "in the workers bundle",
        }
    return {
        "ok": False,
        "reason": "unreachable",
        "message": f"the hub {where} is unreachable ({detail})",
    }


def _install_certificate(config: Dict[str, Any], name: str) -> None:
    """The claimed certificate, its key and (``smb_credentials``) its own share login, from
    the pool into place."""
    pool = config["pool_dir"]
    chosen = [("crt", config["cert"], 0o644, 0), ("key", config["key"], 0o600, 0)]
    if config.get("smb_credentials"):
        # Readable by one group besides root when asked (the render tasks' user, which
        # reaches the share with it), never by others.
        gid = _group_id(config.get("smb_credentials_group") or "")
        chosen.append(("smb", config["smb_credentials"], 0o640 if gid else 0o600, gid))
    for kind, target, mode, gid in chosen:
        with open(os.path.join(pool, f"{name}.{kind}"), "rb") as handle:
            data = handle.read()
        if _read_bytes(target) != data:
            durable_write(target, data, mode & 0o600)
        if os.stat(target).st_gid != gid:
            os.chown(target, -1, gid)
        os.chmod(target, mode)


def _group_id(group: str) -> int:
    """``group``'s gid, or 0 (root) when there is none by that name."""
    if not group:
        return 0
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return 0


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _save_state(state: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(WORKER_STATE), mode=0o755, exist_ok=True)
    durable_write(WORKER_STATE, (json.dumps(state) + "\n").encode(), 0o644)


def _load_state() -> Optional[Dict[str, Any]]:
    text = _read(WORKER_STATE)
    if not text:
        return None
    try:
        return dict(json.loads(text))
    except ValueError:
        return None


def _forget_state() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(WORKER_STATE)


Clocks = Tuple[float, Optional[float]]


def clocks() -> Clocks:
    """(wall clock, CLOCK_BOOTTIME or None): the clocks a worker judges its lease on. Both keep
    counting while the machine is suspended; the wall clock also counts a VM pause once NTP or
    the guest agent sets it right. time.monotonic() stops in both, so it is never used."""
    clock_id = getattr(time, "CLOCK_BOOTTIME", 7 if sys.platform.startswith("linux") else None)
    boot = None  # type: Optional[float]
    if clock_id is not None:
        try:
            boot = time.clock_gettime(clock_id)
        except (OSError, AttributeError):
            boot = None
    return time.time(), boot


def lease_deadlines(answer: Dict[str, Any], sent: Clocks, ttl: int) -> Dict[str, Any]:
    """When the lease the hub just granted ends, on this machine's clocks: the time it had left
    by the hub's own clock (``expires - now`` in its answer), counted from before the request
    was sent, so never later than the hub's expiry, however far apart the two clocks are."""
    lease = answer.get("lease") or {}
    try:
        left = float(lease["expires"]) - float(answer.get("now", lease["renewed"]))
    except (KeyError, TypeError, ValueError):
        left = float(ttl)
    left = max(0.0, left)
    return {
        "expires_at": sent[0] + left,
        "expires_boot": None if sent[1] is None else sent[1] + left,
        "hub_expires": lease.get("expires"),
    }


def lease_left(state: Dict[str, Any], now: Clocks) -> float:
    """Seconds until the lease in ``state`` ends: the least any clock says (<= 0: it ended)."""
    lefts = []
    if isinstance(state.get("expires_at"), (int, float)):
        lefts.append(float(state["expires_at"]) - now[0])
    if isinstance(state.get("expires_boot"), (int, float)) and now[1] is not None:
        lefts.append(float(state["expires_boot"]) - now[1])
    if not lefts and isinstance(state.get("renewed_at"), (int, float)):  # an older picker's
        lefts.append(float(state["renewed_at"]) + int(state["ttl"]) - time.monotonic())
    return min(lefts) if lefts else 0.0


def pick(config: Dict[str, Any], attempts: int = 0, clock: Callable[[], Clocks] = clocks) -> int:
    """Claim until the hub grants a certificate, then install it for Nebula. Every refusal is
    logged (again when the reason changes, or each minute) and retried: never a guess."""
    _forget_state()
    machine = machine_identity()
    boot = boot_id()
    hostname = short_hostname()
    want = wanted_name(hostname, config["pool_dir"])
    _log(
        "asking the hub {} for {} (hostname {}, machine {})".format(
            config["hub"], want or "any free worker certificate", hostname, machine[:12]
        )
    )
    last, last_at, tries = "", 0.0, 0
    while True:
        tries += 1
        sent = clock()
        answer = ask_hub(
            config,
            {"op": "claim", "machine": machine, "boot": boot, "hostname": hostname, "name": want},
        )
        if answer.get("ok"):
            lease = answer["lease"]
            _install_certificate(config, lease["name"])
            ttl = int(answer.get("ttl", config["ttl"]))
            _save_state(
                {
                    "name": lease["name"],
                    "ip": lease["ip"],
                    "machine": machine,
                    "boot": boot,
                    "hostname": hostname,
                    "ttl": ttl,
                    **lease_deadlines(answer, sent, ttl),
                }
            )
            _log(
                "this worker is {} ({}): leased from the hub for {} s, renewed every {} s".format(
                    lease["name"], lease["ip"], answer.get("ttl"), config["renew_every"]
                )
            )
            return 0
        text = "waiting for a certificate: {} ({}); trying again every {:.0f} s".format(
            answer.get("message", "no answer"), answer.get("reason", "?"), RETRY_SECONDS
        )
        if text != last or time.monotonic() - last_at >= REPEAT_LOG_SECONDS:
            _log(text)
            last, last_at = text, time.monotonic()
        if attempts and tries >= attempts:
            return 1
        time.sleep(RETRY_SECONDS * random.uniform(0.6, 1.4))


def _systemctl(*args: str) -> None:
    subprocess.run(["systemctl", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _start_over(config: Dict[str, Any], why: str) -> int:
    """Stop Nebula at once (never two hosts on one address) and pick again in the background."""
    _log(why + ": stopping Nebula and picking a certificate again")
    _forget_state()
    _systemctl("stop", config["nebula_unit"])
    _systemctl("restart", "--no-block", config["pick_unit"])
    _systemctl("start", "--no-block", config["nebula_unit"])
    return 1


def renew_once(config: Dict[str, Any], clock: Callable[[], Clocks] = clocks) -> int:
    """One renewal (the timer's job). The lease is judged on clocks that keep counting through
    a suspend or a VM pause (see clocks): one that has ended by them (the machine slept
    through its expiry), that the hub says had lapsed, that was lost, or that is about to end
    because the hub cannot be reached, stops Nebula and starts the pick over."""
    state = _load_state()
    if state is None:
        return 0  # no certificate picked yet (the picker is still waiting)
    name = state["name"]
    left = lease_left(state, clock())
    if left <= 0:
        return _start_over(
            config,
            f"the lease of {name} ended {-left:.0f} s ago by this machine's clock, without a "
            "renewal (was it suspended or paused?)",
        )
    sent = clock()
    answer = ask_hub(
        config,
        {
            "op": "renew",
            "machine": state["machine"],
            "boot": state["boot"],
            "hostname": state["hostname"],
            "name": name,
        },
    )
    if answer.get("ok"):
        if answer.get("lapsed"):
            return _start_over(
                config,
                f"the hub says the lease of {name} had ended before this renewal (was this "
                "machine suspended or paused?)",
            )
        state["ttl"] = int(answer.get("ttl", state["ttl"]))
        state.update(lease_deadlines(answer, sent, state["ttl"]))
        state.pop("renewed_at", None)
        _save_state(state)
        if answer.get("warning"):
            _log(f"renewed {name}, but: {answer['warning']}")
        return 0
    reason = answer.get("reason")
    if reason == "lost":
        return _start_over(
            config, "the lease of {} was lost: {}".format(name, answer.get("message"))
        )
    if reason == "unknown":
        # A revoked certificate's address is never handed out again: no clash is possible.
        _log("cannot renew {}: {}".format(name, answer.get("message")))
        return 1
    left = lease_left(state, clock())
    if left <= max(2, int(config["renew_every"]) // 2):
        return _start_over(
            config,
            "no renewal of {}, whose lease ends in {:.0f} s (lease {} s): the hub may give it "
            "away ({})".format(name, max(0.0, left), state["ttl"], answer.get("message")),
        )
    _log("cannot renew {} yet: {}; will retry".format(name, answer.get("message")))
    return 0


def release_now(config: Dict[str, Any]) -> int:
    """At a clean shutdown: give the certificate back so another clone can have it at once."""
    state = _load_state()
    if state is None:
        return 0
    answer = ask_hub(
        config,
        {
            "op": "release",
            "machine": state["machine"],
            "boot": state["boot"],
            "hostname": state["hostname"],
            "name": state["name"],
        },
    )
    if answer.get("ok"):
        _log("released {}".format(state["name"]))
    else:
        _log(
            "could not release {} ({}): it frees itself when its lease ends".format(
                state["name"], answer.get("message")
            )
        )
    _forget_state()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else ""
    if command == "serve":
        return serve()
    if command in ("pick", "renew", "release"):
        config = load_worker_config()
        if command == "pick":
            return pick(config)
        if command == "renew":
            return renew_once(config)
        return release_now(config)
    if command == "identity":
        sys.stdout.write(machine_identity() + " " + boot_id() + "\n")
        return 0
    sys.stderr.write("usage: leases.py serve | pick | renew | release | identity\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
