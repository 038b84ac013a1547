"""HTTP and WebSocket routers; each one is a thin adapter over sql.py and auth.py."""
