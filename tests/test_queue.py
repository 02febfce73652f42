"""The render queue choice, its firewall, its TLS material and its rendered files."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address

import pytest
from cryptography import x509

from farmhand.errors import UsageError
from farmhand.keystore import farm_secrets
from farmhand.keystore.plan import Role, new_plan
from farmhand.queue import deadline, queue_service
from farmhand.queue import tls as queuetls
from farmhand.queue.base import Renderer, RenderManager, render_manager, renderer


def plan_with(**settings: object):  # type: ignore[no-untyped-def]
    return new_plan("farm").with_settings(**settings)


def test_the_plan_chooses_manager_and_renderer() -> None:
    assert queue_service(plan_with()).port == 6817
    assert render_manager(plan_with()) is RenderManager.SLURM
    assert queue_service(plan_with(render_manager="deadline")).port == 27100
    assert queue_service(plan_with(render_manager="flamenco")).port == 8080
    assert renderer(plan_with(renderer="bella")) is Renderer.BELLA
    # A bad choice is refused where farm.toml is read, before anything asks for it.
    with pytest.raises(UsageError, match=r'^render_manager = "torque": expected one of "slurm"'):
        render_manager(plan_with(render_manager="torque"))
    with pytest.raises(UsageError, match='renderer = "povray"'):
        renderer(plan_with(renderer="povray"))


@pytest.fixture(scope="module")
def blob() -> bytes:
    return queuetls.make()


def test_tls_parts_by_role(blob: bytes) -> None:
    hub = farm_secrets.for_role(Role.HUB, {queuetls.NAME: blob})
    worker = farm_secrets.for_role(Role.WORKER, {queuetls.NAME: blob})
    boss = farm_secrets.for_role(Role.BOSS, {queuetls.NAME: blob})
    assert hub == {queuetls.NAME: blob}
    part = queuetls.QueueTls.from_bytes(worker[f"{queuetls.NAME}.worker"])
    assert boss[f"{queuetls.NAME}.boss"] == worker[f"{queuetls.NAME}.worker"]
    # Clients never get the CA key, the server key or the database password.
    assert not part.ca_key
    assert not part.server_key
    assert not part.db_password
    queuetls.verify_signed(part.client_cert, part.ca_cert)


def test_server_certificate_is_deterministic_and_for_the_overlay_ip(blob: bytes) -> None:
    tls = queuetls.QueueTls.from_bytes(blob)
    ip = IPv4Address("10.87.0.1")
    first, second = tls.server_pem(ip), tls.server_pem(ip)
    assert first == second  # deploys stay idempotent
    cert = x509.load_pem_x509_certificate(first)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ip]
    queuetls.verify_signed(
        first.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n", tls.ca_cert
    )


def test_openssl_accepts_the_chain(blob: bytes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tls = queuetls.QueueTls.from_bytes(blob)
    (tmp_path / "ca.pem").write_bytes(tls.ca_cert)
    (tmp_path / "server.pem").write_bytes(tls.server_pem(IPv4Address("10.87.0.1")))
    (tmp_path / "client.pem").write_bytes(tls.client_cert)
    for name, purpose in (("server.pem", "sslserver"), ("client.pem", "sslclient")):
        result = subprocess.run(
            ["openssl", "verify", "-purpose", purpose, "-CAfile", str(tmp_path / "ca.pem"),
             str(tmp_path / name)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr


def test_installer_flags() -> None:
    args = deadline.repository_args(IPv4Address("10.87.0.1"))
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--dbhost"] == "10.87.0.1"
    assert pairs["--dbport"] == pairs["--dbListeningPort"] == "27100"
    assert pairs["--installmongodb"] == "false"
    assert pairs["--dbssl"] == "true"
    assert pairs["--dbpassword"] == f"env:{deadline.PASSWORD_ENV}"
    client = dict(
        zip(*[iter(deadline.client_args("/mnt/farmhand/queue", "farmhand"))] * 2, strict=True)
    )
    assert client["--launcherdaemon"] == "false"
    assert client["--licensemode"] == "LicenseFree"


@pytest.mark.parametrize("platform", deadline.BOSS_PLATFORMS)
def test_client_command_per_platform(platform: str) -> None:
    command = deadline.client_command(IPv4Address("10.87.0.1"), platform)
    assert "--connectiontype Direct" in command
    assert "--dbsslcertificate" in command
    with pytest.raises(UsageError):
        deadline.client_command(IPv4Address("10.87.0.1"), "amiga")
