"""The pure core of pre-copy: policy, model, records, interfaces, codec choice, engine, report.

May import: ground, migrator.memory, migrator.codecs.
"""
