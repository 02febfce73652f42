"""pyinfra deploy: the farm's worker. Run it as `farmhand deploy worker …`, or directly:

FARMHAND_PASSPHRASE=… pyinfra INVENTORY deploys/worker.py --data farmhand_bundle=BUNDLE
"""

from farmhand.deploy.tasks.roles import worker

worker()
