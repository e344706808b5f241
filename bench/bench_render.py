"""Placeholder until the chat renderer lands (replaced below)."""
