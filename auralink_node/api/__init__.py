"""The node's HTTP APIs: the control API on a unix socket, and the opt-in metrics endpoint."""
