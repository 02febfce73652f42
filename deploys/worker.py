"""pyinfra deploy: the farm's worker. Run it as `farmhand deploy worker …`, or directly:

FARMHAND_PASSPHRASE=… pyinfra INVENTORY deploys/worker.py --data farmhand_bundle=BUNDLE
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from farmhand_tasks.roles import worker

worker()
