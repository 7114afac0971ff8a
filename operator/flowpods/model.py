"""The flow model under its first public path, for tools outside the package (Kestra's conformance
measure imports `flowpods.model`); the model itself is `flowpods.core.model`."""

from flowpods.core.model import *  # noqa: F403
from flowpods.core.model import TYPE_ALIASES, Schedule, Webhook

__all__ = ["TYPE_ALIASES", "Schedule", "Webhook"]
