"""HTTP for every provider: the one client builder (client.py) and the SSE reader (sse.py)."""
