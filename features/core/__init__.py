"""What every layer uses, at the bottom: the error kinds, file helpers, the command-line
toolkit, HTML primitives, month arithmetic and the environment's settings."""
