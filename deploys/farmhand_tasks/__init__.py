"""farmhand's reusable pyinfra tasks; deploys/hub.py, worker.py and boss.py compose them."""
