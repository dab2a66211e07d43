"""The pure protocol core: wire formats, schemas, seal/open, receipts, Merkle math, signed notes.

Nothing here touches sockets, files or clocks; callers pass ``now``. See docs/PROTOCOL.md.
"""
