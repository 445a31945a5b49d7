"""The composition root: which services a process hosts, the gRPC server, the commands.

Nothing imports this package but the commands and the tests: it sits above the services
(stt_service, tts_service, speech_jobs) and the kernel (speech_platform), and wires them
together (``registry``: service name -> build function; ``server``: grpc.aio server,
health, reflection, drain; ``cli``: ``speech-server``; ``cache_warm_cli``:
``speech-cache-warm``).
"""
