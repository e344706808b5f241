"""Providers: each maps its own SDK/HTTP API onto the small protocol in `base.py`.

Only `gpuctl.router` knows their priority order; nothing here knows about the others.
"""
