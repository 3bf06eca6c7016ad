"""Market: candles with volume, forecasts with their intervals, and realized accuracy."""

from cryptopipe_dashboard.views import current_config, market_page

market_page(current_config())
