#!/usr/bin/env python3
"""STAND-IN for mongosh (tests only): records its arguments and that its script was readable."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from standin_common import record

record("mongosh")
with open(sys.argv[-1], encoding="utf-8") as script:
    assert "createUser" in script.read()
