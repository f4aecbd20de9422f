"""Several worker processes: their parent, the socket hand-off and listening sockets."""
