"""Backends: the upstreams that answer chat requests."""
