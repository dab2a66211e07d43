"""The async shell: config, storage, peer and admin APIs, delivery workers, audit storage.

The only package with sockets, SQLite, tasks and clocks. It calls the pure core, never the reverse.
"""
