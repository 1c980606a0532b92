"""The dashboard (issue 9): a live web UI served at ``/`` by Shoal itself; see ``docs/dashboard.md``."""

from shoal.dashboard.feature import DashboardFeature

__all__ = ["DashboardFeature"]
