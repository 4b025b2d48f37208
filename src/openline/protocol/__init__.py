"""The sans-I/O protocol core: bytes in, events out. Standard library only."""
