"""The kernel every speech package builds on: config, errors, the priority table, batching
glue, the response cache and its door, the service protocol, interceptors, metrics, logs and
memory settings. It imports none of the services (tests/platform/test_layers.py)."""
