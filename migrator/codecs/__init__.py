"""Page codecs by name: zero-page elision, none/lz4/zstd, XBZRLE, their speed on this CPU.

May import: ground, migrator.memory.
"""
