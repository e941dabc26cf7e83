"""The wanmig command: collects each part's subcommands, maps errors to exit statuses.

May import: ground, topologies, controller, migrator, experiments.
"""

__version__ = "0.1.0"
