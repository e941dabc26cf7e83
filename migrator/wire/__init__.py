"""The migration stream's bytes: frames, messages, the key handshake, PAGES, the image digest.

May import: ground, migrator.memory, migrator.codecs.
"""
