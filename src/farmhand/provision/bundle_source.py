"""Getting a keybundle from where users put it: a path, an HTTPS URL, or a share link.

People share bundles through Google Drive and Dropbox; their "share" links open a web page, so
they are rewritten to the providers' direct-download form first. A download lands in a 0600
temporary file that is removed afterwards, whatever happens. The bundle is age-encrypted, so
the download itself carries no secret in clear; HTTPS still keeps a stranger from swapping it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from farmhand import __version__
from farmhand.errors import FarmhandError, UsageError

MAX_BUNDLE_BYTES = 64 * 1024 * 1024
"""Far above a 10,000-worker bundle (a few MB): anything bigger is not a bundle."""

AGE_MAGIC = b"age-encryption.org/v1\n"
TIMEOUT = 30.0

_DRIVE_HOSTS = ("drive.google.com", "docs.google.com")
_DROPBOX_HOSTS = ("www.dropbox.com", "dropbox.com")
_DRIVE_PATH_ID = re.compile(r"/file/d/([A-Za-z0-9_-]{10,})(?:/|\Z)")
_DRIVE_ID = re.compile(r"[A-Za-z0-9_-]{10,}")  # fullmatch only


class FetchError(FarmhandError):
    """A bundle URL could not be downloaded, or what came back is not a bundle."""


def is_url(source: str) -> bool:
    return "://" in source


def direct_url(url: str) -> str:
    """The URL that downloads the file itself: share links rewritten, others as given.

    Google Drive: ``/file/d/ID/view``, ``/open?id=ID`` and ``/uc?id=ID`` become the download
    endpoint with ``confirm=t`` (no "cannot scan for viruses" page). Dropbox: ``dl=0`` (the
    preview page) becomes ``dl=1``, keeping ``rlkey`` and the other parameters of new links.
    """
    parts = urlsplit(url.strip())
    if parts.scheme != "https":
        raise UsageError(f"bundle URLs must use https, not {parts.scheme or 'nothing'}: {url}")
    if not parts.hostname:
        raise UsageError(f"not a URL: {url}")
    host = parts.hostname.lower()
    if host in _DRIVE_HOSTS:
        return _drive(url, parts.path, parse_qs(parts.query))
    if host in _DROPBOX_HOSTS:
        query = [(k, v) for k, vs in parse_qs(parts.query).items() for v in vs if k != "dl"]
        query.append(("dl", "1"))
        return urlunsplit(("https", "www.dropbox.com", parts.path, urlencode(query), ""))
    return url.strip()


def _drive(url: str, path: str, query: dict[str, list[str]]) -> str:
    match = _DRIVE_PATH_ID.match(path)
    file_id = match.group(1) if match else (query.get("id") or [""])[0]
    if not _DRIVE_ID.fullmatch(file_id):
        raise UsageError(
            f"cannot find the file in Google Drive link {url}: use the file's 'Share' link "
            "(https://drive.google.com/file/d/ID/view)"
        )
    query_out = {"id": file_id, "export": "download", "confirm": "t"}
    return "https://drive.usercontent.google.com/download?" + urlencode(query_out)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return f"its certificate is not trusted ({reason.verify_message})"
        if isinstance(reason, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror.lower()
        return str(reason)
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {TIMEOUT:.0f} s"
    return str(exc) or type(exc).__name__


def download(url: str, dest: Path, *, timeout: float = TIMEOUT) -> None:
    """Download ``url`` (already direct) into ``dest``, which must exist and be private."""
    if not url.startswith("https://"):
        raise UsageError(f"bundle URLs must use https: {url}")
    headers = {"User-Agent": f"farmhand/{__version__}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - https only, above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data = response.read(MAX_BUNDLE_BYTES + 1)
            kind = response.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"cannot download the bundle from {url}: {_reason(exc)}") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise FetchError(f"{url} is larger than any keybundle: not a bundle")
    if not data.startswith(AGE_MAGIC):
        hint = (
            " (a web page: is the link shared with 'anyone with the link'?)"
            if "html" in kind.lower() or data.lstrip()[:1] == b"<"
            else ""
        )
        raise FetchError(f"what {url} returned is not an age-encrypted keybundle{hint}")
    with dest.open("wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def bundle_file(source: str) -> Iterator[Path]:
    """A local path to the bundle ``source`` names; a download is deleted when done."""
    if not is_url(source):
        yield Path(source)
        return
    url = direct_url(source)
    fd, name = tempfile.mkstemp(prefix="farmhand-bundle-", suffix=".age")  # mode 0600
    os.close(fd)
    path = Path(name)
    try:
        download(url, path)
        yield path
    finally:
        path.unlink(missing_ok=True)
