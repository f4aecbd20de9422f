"""The service's state: what it serves, its materialization, and swaps on new registry files."""
