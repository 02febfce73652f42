"""What sshd reads: farmhand's key-only settings, and which file's value sshd ends up using.

sshd keeps the *first* value it reads for a keyword (sshd_config(5); ``HostKey`` and a few
others add up instead), reading ``sshd_config`` top to bottom and each ``Include`` where it
stands. So a drop-in of ours counts only if it is read before every other file that sets the
same keyword:

- it is named ``00-farmhand.conf``: ``Include`` reads a glob in sorted order, and what others
  ship sorts later (Ubuntu's cloud images ``50-cloud-init.conf``, often with
  ``PasswordAuthentication yes``; EL 9 ``50-redhat.conf`` and, after some installs,
  ``01-permitrootlogin.conf`` with ``PermitRootLogin yes``);
- ``sshd_config`` must read the drop-in folder before any setting of its own. Debian, Ubuntu
  and EL 9 ship ``Include /etc/ssh/sshd_config.d/*.conf`` as their first line; EL 8's stock
  file has no Include at all (and says ``PasswordAuthentication yes``), so the deploy puts the
  Include at its top (deploy/tasks/ssh.py).

Renaming the drop-in, rather than editing ``sshd_config`` itself, keeps every setting farmhand
makes in one file that ``farmhand files`` shows and a deploy can replace or take away whole.
``farmhand verify`` then checks what sshd really uses (``sshd -T``) and, when a value is wrong,
names the file that set it (:func:`setting_sources`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable

from farmhand.model.paths import SSHD_CONFIG, SSHD_DROPIN_DIR

KEY_ONLY = (
    ("PasswordAuthentication", "no"),
    ("KbdInteractiveAuthentication", "no"),
    ("PermitRootLogin", "prohibit-password"),
)
"""What farmhand's drop-in sets where a key login works, in sshd_config's spelling."""

EFFECTIVE_SPELLINGS = {"prohibit-password": ("prohibit-password", "without-password")}
"""Values ``sshd -T`` prints under another name (OpenSSH prints ``without-password``)."""

DROPIN_INCLUDE = f"Include {SSHD_DROPIN_DIR}/*.conf"
"""The line that makes sshd read the drop-in folder; first in sshd_config, or our settings
lose to anything sshd_config itself sets."""

SSHD_ETC = SSHD_CONFIG.rsplit("/", 1)[0]
"""Where a relative Include points (sshd_config(5): files without an absolute path)."""


def directives(text: str) -> list[tuple[str, list[str]]]:
    """``(keyword in lower case, arguments)`` for each setting line, comments and blanks left
    out; ``Keyword=value`` and quoted arguments as sshd reads them."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+|$)(.*)", line)
        if not match:
            continue
        try:
            args = shlex.split(match.group(2), comments=True)
        except ValueError:
            args = match.group(2).split()
        found.append((match.group(1).lower(), args))
    return found


def reads_dropins_first(text: str) -> bool:
    """Whether an sshd_config reads the drop-in folder before any setting of its own."""
    settings = directives(text)
    if not settings:
        return False
    keyword, args = settings[0]
    return keyword == "include" and DROPIN_INCLUDE.split(" ", 1)[1] in args


def setting_sources(
    keywords: Iterable[str],
    read: Callable[[str], str | None],
    expand: Callable[[str], list[str]],
    config: str = SSHD_CONFIG,
) -> dict[str, tuple[str, str]]:
    """For each keyword (any case), the file whose value sshd keeps and that value: the first
    place it is set outside a ``Match`` block, following ``Include`` as sshd does. ``read(path)``
    gives a file's text (None if unreadable), ``expand(pattern)`` the files a glob names, sorted.
    A ``Match`` block is taken to end with the file it is in, as OpenSSH 9.2 does (the answer
    only names a file in a message: what sshd uses comes from ``sshd -T``)."""
    wanted = {k.lower() for k in keywords}
    found: dict[str, tuple[str, str]] = {}

    def walk(path: str, depth: int) -> None:
        text = read(path)
        if text is None or depth > 16:
            return
        in_match = False
        for keyword, args in directives(text):
            if keyword == "match":
                in_match = True
            elif keyword == "include" and not in_match:
                for pattern in args:
                    pattern = pattern if pattern.startswith("/") else f"{SSHD_ETC}/{pattern}"
                    for name in expand(pattern):
                        walk(name, depth + 1)
            elif keyword in wanted and keyword not in found and not in_match and args:
                found[keyword] = (path, " ".join(args))

    walk(config, 0)
    return found


def wrong_settings(
    effective: str, sources: dict[str, tuple[str, str]], settings: Iterable[tuple[str, str]]
) -> list[str]:
    """What ``sshd -T`` shows against what farmhand sets, one phrase per wrong setting, naming
    the file that wins; empty when every value is ours."""
    shown = {}
    for line in effective.splitlines():
        keyword, _, value = line.strip().partition(" ")
        shown[keyword.lower()] = value.strip()
    problems = []
    for keyword, wanted in settings:
        key = keyword.lower()
        now = shown.get(key)
        if now is None:
            continue  # not a keyword of this OpenSSH (older ones lack some)
        if now.lower() in EFFECTIVE_SPELLINGS.get(wanted, (wanted,)):
            continue
        source = sources.get(key)
        where = f"set in {source[0]}" if source else "sshd's default"
        problems.append(f"{key} is {now} ({where}; farmhand sets {wanted})")
    return problems
