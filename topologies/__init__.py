"""Topologies: YAML spec -> plan -> Mininet network; WAN link backends, the delay line, linkcheck.

May import: ground.
"""
