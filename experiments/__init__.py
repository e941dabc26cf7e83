"""Experiments compose the parts: specs, the runner, clients, metrics, sweeps, plots, benchmarks.

May import: ground, topologies, controller, migrator.
"""
