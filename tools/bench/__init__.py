"""The benchmark harness behind ``python -m tools.bench``.

It measures the platform the way a user meets it: real gRPC over loopback against a real
server subprocess, real models and recorded speech, side by side with the baselines that
every claim is a ratio against (naive serving, the bare engine in-process, Ray Serve).
Modules: workload (clips and texts), loadgen (the grpc.aio load generator), procs (server
subprocesses and their peak RSS), scenarios (what is measured), baselines (naive server,
ceiling, Ray Serve), tune (the config sweep), report (JSON and plots).
"""
