"""A VM's disk: its block devices, local or reached over NBD, and the server exporting an image."""
