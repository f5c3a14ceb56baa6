"""Deferrable inference: jobs shifted to low-carbon hours, kept in a durable store, run through the data plane.

    jobs/model.py      the job, its states and its plan (typed values, no I/O)
    jobs/window.py     the minimum-carbon window before the deadline, from a provider's forecast
    jobs/store.py      the durable store (SQLite under server.state_dir); claims make a job run once
    jobs/scheduler.py  submission checks and (re-)planning against the intensity provider's clock
    jobs/runner.py     runs due jobs on spare capacity through serving.DataPlane, books them in the ledger
    jobs/callback.py   SSRF-safe callback URLs and the completion POST
    jobs/service.py    what the API does: submit (checked as /infer checks a body), show, list, cancel
    jobs/assembly.py   builds the room on a data plane; jobs/cli.py: ``wattgate jobs list|show|cancel``

The room sits above ``serving/`` (it drives the data plane) and below ``gateway/`` (HTTP routes:
``gateway/jobs_api.py``). Nothing here imports Ray or knows HTTP statuses beyond the error tree.
"""
