"""The ground: config schema and its error, exit statuses, process line protocol, metadata, tables.

May import: nothing of ours.
"""
