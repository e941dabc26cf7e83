"""What guest memory holds: the page size, synthetic page contents, which pages a workload writes.

May import: ground.
"""
