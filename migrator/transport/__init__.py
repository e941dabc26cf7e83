"""TCP under the wire: channels, flow control, the flight window, the sender and the receiver.

May import: ground, migrator.memory, migrator.codecs, migrator.core, migrator.wire.
"""
