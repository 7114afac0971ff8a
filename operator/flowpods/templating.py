"""Templating under its first public path, for tools outside the package (Kestra's conformance measure
imports `flowpods.templating` and compiles with its environment); the code is `flowpods.core.templating`."""

from flowpods.core.templating import *  # noqa: F403
from flowpods.core.templating import _environment, render, render_string

__all__ = ["_environment", "render", "render_string"]
