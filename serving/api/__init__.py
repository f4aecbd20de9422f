"""The HTTP API: the app, its routers, bodies, dependencies, request middleware and metrics."""
