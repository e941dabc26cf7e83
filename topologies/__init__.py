"""wanmig: topologies."""
