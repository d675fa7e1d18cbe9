"""Small operator tools behind the Makefile targets."""
