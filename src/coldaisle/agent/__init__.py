"""The node agent: sampling loop, host signals, Prometheus exporter, HTTP server."""
