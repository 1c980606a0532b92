"""Shoal: live streams of short text into meaning, in real time."""

from shoal.app import create_app
from shoal.errors import ShoalError
from shoal.settings import Settings

__version__ = "0.1.0"

__all__ = ["Settings", "ShoalError", "__version__", "create_app"]
