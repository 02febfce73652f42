#!/usr/bin/env python3
"""STAND-IN for DeadlineRepository-*.run / DeadlineClient-*.run (tests only).

Records its arguments and lays down what the real installer leaves: the repository's
settings/connection.ini (owned by uid 1000, as the real one leaves it) or the client's bin/
with a stand-in deadlineworker and /var/lib/Thinkbox/Deadline10/deadline.ini.
"""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin_common import option, record

name = os.path.basename(sys.argv[0])
record(name)
if name.startswith("DeadlineRepository"):
    prefix = option("--prefix")
    for sub in ("settings", "bin", "plugins", "scripts", "jobs"):
        os.makedirs(f"{prefix}/{sub}", exist_ok=True)
    with open(f"{prefix}/settings/connection.ini", "w", encoding="utf-8") as out:
        out.write(
            "[Connection]\n"
            f"Hostname={option('--dbhost')}\nPort={option('--dbport')}\n"
            f"DatabaseName={option('--dbname')}\nEnableSSL={option('--dbssl')}\n"
            f"Authenticate={option('--dbauth')}\n"
        )
    for root, dirs, files in os.walk(prefix):
        for entry in dirs + files:
            os.chown(os.path.join(root, entry), 1000, 1000)
else:
    prefix = option("--prefix")
    os.makedirs(f"{prefix}/bin", exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(f"{here}/standin_daemon.py", f"{prefix}/bin/deadlineworker")
    shutil.copy(f"{here}/standin_common.py", f"{prefix}/bin/standin_common.py")
    os.chmod(f"{prefix}/bin/deadlineworker", 0o755)  # noqa: S103 - an executable
    os.makedirs("/var/lib/Thinkbox/Deadline10", exist_ok=True)
    with open("/var/lib/Thinkbox/Deadline10/deadline.ini", "w", encoding="utf-8") as out:
        out.write(
            "[Deadline]\nConnectionType=Direct\n"
            f"NetworkRoot={option('--repositorydir')}\n"
            f"DbSSLCertificate={option('--dbsslcertificate')}\nLicenseMode=LicenseFree\n"
        )
