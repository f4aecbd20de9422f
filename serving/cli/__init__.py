"""The `sunshine` command: one root, each group of commands in a module of its own."""
