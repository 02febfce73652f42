"""One exception family, so the CLI can turn any expected failure into a one-line message."""

from __future__ import annotations


class FarmhandError(Exception):
    """An expected failure the user can act on; ``str()`` is the whole message."""

    exit_code = 1


class UsageError(FarmhandError):
    """The command was given input it cannot work with (bad CIDR, unknown name...)."""

    exit_code = 2


class CertificateError(FarmhandError):
    """A Nebula certificate or key could not be parsed, or failed verification."""


class StoreError(FarmhandError):
    """The key store is missing, locked, damaged or would be changed unsafely."""


class BundleError(FarmhandError):
    """A keybundle could not be opened: wrong passphrase, damaged, or not a bundle."""


class PassphraseError(FarmhandError):
    """No usable passphrase was supplied, or it does not unlock the store."""


class LabError(FarmhandError):
    """The one-machine lab could not be built, started, reached or torn down."""
