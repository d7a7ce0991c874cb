"""The node: its one composition root (``compose.py``), what it holds (``services.py``), the worker entry point."""
