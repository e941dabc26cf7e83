"""wanmig: a testbed for long-distance live VM migration."""

__version__ = "0.1.0"
