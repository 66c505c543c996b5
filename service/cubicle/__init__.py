"""cubicle: a sandboxed Linux desktop that AI agents operate over HTTP."""

__version__ = "0.1.0"
