"""wanmig: controller."""
