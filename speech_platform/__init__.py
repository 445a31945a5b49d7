"""Shared runtime of the speech services: config, server bootstrap, interceptors, cache, jobs."""
