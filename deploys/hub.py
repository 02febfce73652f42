"""pyinfra deploy: the farm's hub. Run it as `farmhand deploy hub …`, or directly:

FARMHAND_PASSPHRASE=… pyinfra INVENTORY deploys/hub.py --data farmhand_bundle=BUNDLE
"""

from farmhand.deploy.tasks.roles import hub

hub()
