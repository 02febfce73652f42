"""farmhand's reusable pyinfra tasks; deploys/hub.py, worker.py and boss.py compose them."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar, cast

from pyinfra.api.deploy import deploy as pyinfra_deploy

P = ParamSpec("P")
R = TypeVar("R")


def deploy(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """pyinfra's ``@deploy(name)``, typed as the function it wraps: it calls it with the same
    arguments and returns what it returns, but pyinfra's own annotation puts its global
    arguments (``_sudo``...) first, so a positional call would not type-check."""
    return cast(Callable[[Callable[P, R]], Callable[P, R]], pyinfra_deploy(name))
