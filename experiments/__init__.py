"""wanmig: experiments."""
