"""wanmig: migrator."""
