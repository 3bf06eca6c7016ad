"""cryptopipe dashboard: Streamlit app for candles, forecasts and pipelines."""
