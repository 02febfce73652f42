"""pyinfra deploy: the farm's hub. Run it as `farmhand deploy hub …`, or directly:

FARMHAND_PASSPHRASE=… pyinfra INVENTORY deploys/hub.py --data farmhand_bundle=BUNDLE
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from farmhand_tasks.roles import hub

hub()
