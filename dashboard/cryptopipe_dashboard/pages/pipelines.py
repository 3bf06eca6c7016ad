"""Pipelines: conditions and phase, data freshness, and the last training report."""

from cryptopipe_dashboard.views import current_config, pipelines_page

pipelines_page(current_config())
