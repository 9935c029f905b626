"""chatq: self-hosted asynchronous chat completions, wire-compatible with Perplexity's async API."""

__version__ = "0.1.0"
