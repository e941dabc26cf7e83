"""The ground: config schema and its error, exit statuses, process line protocol, metadata, tables,
the records of what runs own and the identity of a process.

May import: nothing of ours.
"""
