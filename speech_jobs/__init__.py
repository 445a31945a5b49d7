"""Long-running jobs: transcription of long recordings and bulk synthesis (cache warming).

One API (``service``: speech.v1.Jobs), one job runner (``runner``), two backends:

* local (default): records in memory (``store.MemoryJobStore``), jobs run in the server
  process on its own engines (``local``); nothing else to run.
* celery: records in Redis (``redis_store``), jobs published to one queue per kind
  (``celery_app``) and run by ``speech-worker`` processes (``worker``, ``worker_cli``).

``client_cli`` is the ``speech-jobs`` command. See docs/jobs.md for operating the workers.
"""
