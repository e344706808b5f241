"""gpuctl: run your own open-weight LLM endpoint cheaply, with a fallback that always answers."""

__version__ = "0.1.0"
