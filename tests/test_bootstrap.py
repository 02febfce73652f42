"""``farmhand bootstrap`` before it touches the host: bundle sources, downloads and refusals.

Downloads are real HTTPS from a server on 127.0.0.1 with a certificate made for the test and
trusted through SSL_CERT_FILE. The CLI runs as a real subprocess. Every refusal here happens
before the deploy would start (that part runs in the lab: tests/test_lab_bootstrap.py).
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import os
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from farmhand.errors import UsageError
from farmhand.provision import bundle_source
from farmhand.provision.bootstrap import NotRootError, require_root
from support.cli import WITH_PASSPHRASE, WITH_WRONG_PASSPHRASE, assert_cli_error, run_cli
from support.session import Farm

ROOT = Path(__file__).resolve().parents[1]

# --- share links ------------------------------------------------------------------------------

DRIVE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
DRIVE_DIRECT = (
    f"https://drive.usercontent.google.com/download?id={DRIVE_ID}&export=download&confirm=t"
)


@pytest.mark.parametrize(
    ("link", "direct"),
    [
        (f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing", DRIVE_DIRECT),
        (f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=drive_link", DRIVE_DIRECT),
        (f"https://drive.google.com/file/d/{DRIVE_ID}/edit", DRIVE_DIRECT),
        (f"https://drive.google.com/file/d/{DRIVE_ID}", DRIVE_DIRECT),
        (f"https://drive.google.com/open?id={DRIVE_ID}", DRIVE_DIRECT),
        (f"https://drive.google.com/uc?id={DRIVE_ID}&export=download", DRIVE_DIRECT),
        (f"https://docs.google.com/uc?export=download&id={DRIVE_ID}", DRIVE_DIRECT),
        (
            "https://www.dropbox.com/s/a1b2c3d4e5f6g7h/workers.keybundle.age?dl=0",
            "https://www.dropbox.com/s/a1b2c3d4e5f6g7h/workers.keybundle.age?dl=1",
        ),
        (
            "https://www.dropbox.com/scl/fi/q7x2k9p0zz1abcd/workers.keybundle.age"
            "?rlkey=8j3n5fq2w0lmt1r6y4c9v7b2x&st=ab12cd34&dl=0",
            "https://www.dropbox.com/scl/fi/q7x2k9p0zz1abcd/workers.keybundle.age"
            "?rlkey=8j3n5fq2w0lmt1r6y4c9v7b2x&st=ab12cd34&dl=1",
        ),
        (
            "https://dropbox.com/scl/fi/q7x2k9p0zz1abcd/hub.keybundle.age?rlkey=8j3n5fq2w0l",
            "https://www.dropbox.com/scl/fi/q7x2k9p0zz1abcd/hub.keybundle.age?rlkey=8j3n5fq2w0l&dl=1",
        ),
        (
            "https://dl.dropboxusercontent.com/s/a1b2c3d4e5f6g7h/workers.keybundle.age",
            "https://dl.dropboxusercontent.com/s/a1b2c3d4e5f6g7h/workers.keybundle.age",
        ),
        (
            "https://files.example.net/farm/workers.keybundle.age?token=abc",
            "https://files.example.net/farm/workers.keybundle.age?token=abc",
        ),
    ],
)
def test_share_links_become_direct_downloads(link: str, direct: str) -> None:
    assert bundle_source.direct_url(link) == direct


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("http://files.example.net/workers.keybundle.age", "must use https"),
        ("ftp://files.example.net/workers.keybundle.age", "must use https"),
        ("https://drive.google.com/drive/folders/1AbCdEfGhIjKlMnOp", "cannot find the file"),
        ("https://drive.google.com/open?id=short", "cannot find the file"),
    ],
)
def test_links_that_cannot_work_are_refused(link: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        bundle_source.direct_url(link)


# --- real downloads over HTTPS on loopback --------------------------------------------------


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "server.crt", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Server:
    def __init__(self, routes: dict[str, tuple[int, str, bytes]], cert: Path, key: Path) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, kind, body = routes.get(self.path, (404, "text/plain", b"not found"))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(farm: Farm, tls: tuple[Path, Path]) -> Iterator[Server]:
    age = "application/octet-stream"
    routes = {
        f"/{name}": (200, age, (farm.root / name).read_bytes())
        for name in ("workers.keybundle.age", "hub.keybundle.age")
    }
    routes["/share-page"] = (200, "text/html; charset=utf-8", b"<!DOCTYPE html><html>Sign in")
    routes["/gone"] = (410, "text/plain", b"gone")
    serving = Server(routes, *tls)
    yield serving
    serving.close()


@pytest.fixture
def trusted(tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))
    return {"SSL_CERT_FILE": str(tls[0])}


def test_a_download_is_private_and_removed_afterwards(
    server: Server, farm: Farm, trusted: dict[str, str]
) -> None:
    with bundle_source.bundle_file(server.url("/workers.keybundle.age")) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == (farm.root / "workers.keybundle.age").read_bytes()
        kept = path
    assert not kept.exists()


def test_a_local_path_is_used_as_it_is(farm: Farm) -> None:
    with bundle_source.bundle_file(str(farm.root / "hub.keybundle.age")) as path:
        assert path == farm.root / "hub.keybundle.age"
    assert path.exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/gone", "the server answered 410 Gone"),
        ("/nothing-here", "the server answered 404 Not Found"),
        ("/share-page", "not an age-encrypted keybundle (a web page: is the link shared with"),
    ],
)
def test_download_failures_are_one_line_and_leave_no_file(
    server: Server, trusted: dict[str, str], path: str, message: str, tmp_path: Path
) -> None:
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("farmhand-bundle-*"))
    with (
        pytest.raises(bundle_source.FetchError) as caught,
        bundle_source.bundle_file(server.url(path)),
    ):
        pass
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("farmhand-bundle-*")) == before


def test_an_untrusted_certificate_is_refused(server: Server) -> None:
    with pytest.raises(bundle_source.FetchError, match="certificate is not trusted"):
        bundle_source.download(server.url("/workers.keybundle.age"), Path("/nonexistent"))


# --- the CLI: every refusal is one line, before anything happens ----------------------------


def as_nobody(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


def test_bootstrap_refuses_to_run_as_an_ordinary_user() -> None:
    # The real non-root run of the CLI is in the lab (this machine's Python may not be
    # readable by another user); here the check itself.
    with pytest.raises(NotRootError, match=r"must run as root \(use sudo\)$"):
        require_root(euid=1000)
    require_root(euid=0)


def test_bootstrap_sh_refuses_to_run_as_an_ordinary_user() -> None:
    result = subprocess.run(
        as_nobody(["sh", str(ROOT / "bootstrap.sh"), "worker", "--bundle", "x"]),
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert_cli_error(result, "must run as root")
    assert result.stdout == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="the checks after the root check need root")
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["hub", "--bundle", "{root}/workers.keybundle.age"],
            WITH_PASSPHRASE,
            "workers.keybundle.age is a worker bundle: 'farmhand bootstrap hub' needs the hub one",
        ),
        (
            ["worker", "--bundle", "{root}/hub.keybundle.age"],
            WITH_PASSPHRASE,
            "hub.keybundle.age is a hub bundle: 'farmhand bootstrap worker' needs the worker one",
        ),
        (
            ["worker", "--bundle", "{root}/workers.keybundle.age"],
            WITH_WRONG_PASSPHRASE,
            "wrong passphrase for",
        ),
        (["worker", "--bundle", "{root}/missing.age"], WITH_PASSPHRASE, "no such keybundle"),
        (
            ["worker", "--bundle", "https://127.0.0.1:9/workers.keybundle.age"],
            WITH_PASSPHRASE,
            "cannot download the bundle from https://127.0.0.1:9/workers.keybundle.age: "
            "connection refused",
        ),
        (
            ["worker", "--bundle", "http://127.0.0.1:9/workers.keybundle.age"],
            WITH_PASSPHRASE,
            "must use https",
        ),
        (["worker", "--bundle", "{root}/workers.keybundle.age"], {}, "a passphrase is needed"),
        (["boss", "--bundle", "{root}/boss-alice.keybundle.age"], WITH_PASSPHRASE, "bosses join"),
    ],
)
def test_bootstrap_refusals_are_one_line(
    farm: Farm, args: list[str], env: dict[str, str], message: str
) -> None:
    argv = ["bootstrap", *(a.format(root=farm.root) for a in args)]
    assert_cli_error(run_cli(*argv, env=env), message)


@pytest.mark.skipif(os.geteuid() != 0, reason="the checks after the root check need root")
def test_a_downloaded_bundle_of_the_wrong_role_is_named_by_its_url(
    server: Server, trusted: dict[str, str]
) -> None:
    url = server.url("/hub.keybundle.age")
    result = run_cli("bootstrap", "worker", "--bundle", url, env={**WITH_PASSPHRASE, **trusted})
    assert_cli_error(result, f"{url} is a hub bundle")
