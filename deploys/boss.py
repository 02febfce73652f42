"""pyinfra deploy: the farm's boss. Run it as `farmhand deploy boss …`, or directly:

FARMHAND_PASSPHRASE=… pyinfra INVENTORY deploys/boss.py --data farmhand_bundle=BUNDLE
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from farmhand_tasks.roles import boss

boss()
