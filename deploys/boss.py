"""pyinfra deploy: the farm's boss. Run it as `farmhand deploy boss …`, or directly:

FARMHAND_PASSPHRASE=… pyinfra INVENTORY deploys/boss.py --data farmhand_bundle=BUNDLE
"""

from farmhand.deploy.tasks.roles import boss

boss()
