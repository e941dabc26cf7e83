"""The SDN controller that follows a migrating VM: its decisions, its os-ken adapter, its process.

May import: ground.
"""
