"""Helpers the tests share (not tests themselves; pytest collects nothing here).

- ``support.cli``: run the real CLI (``run_cli``, ``popen_cli``, ``run_in_pty``), judge its
  output (``assert_cli_error``, ``assert_no_secret``), the test passphrases, folder snapshots,
  decrypting age tars, ``wait_until``.
- ``support.session``: the session farm every key store test shares (``Farm``, its host names).
- ``support.pyinfra_harness``: the fake pyinfra host the fact-fixture deploy tests run on.
- ``support.fixtures_deploy``: that harness's fixtures, registered once for every test module.
- ``support.lab``: the lab tests' marker and skip, and ``sh`` on a lab host.

The fixtures themselves are in tests/conftest.py, which also has pytest rewrite the asserts here.
"""
