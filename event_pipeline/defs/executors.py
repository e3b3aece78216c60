"""Where a run's steps execute: the one place that chooses.

Without ``CELERY_BROKER_URL`` every step runs in the run worker's process, one after another
(the steps form a chain, so a process per step would only add start-up time). With it, each step
is a task on Dagster's own Celery executor, taken by whichever ``dagster-celery worker`` is free:
steps share nothing but the databases, the broker and the upload store (assets hand each other
only the partition key; inside ``welcome_emails`` the chunk steps pass id ranges and counts through
the IO manager, which keeps them in the var dir's ``step_io/`` on the shared store, never under
``DAGSTER_HOME``).

The broker URL reaches the executor as ``{"env": ...}``: it is read in the run worker when the
run starts, never written into run config (a Redis URL may carry a password). The worker side
(acknowledge late, redeliver the task of a worker that died) is ``deploy/celery.yaml``, read by
``dagster-celery worker start -y``; those settings only act in the worker.
"""

from __future__ import annotations

import os

import dagster as dg

BROKER_ENV = "CELERY_BROKER_URL"
# One Redis serves as broker and result store; a separate backend is a deployment choice that
# would only need another variable here and in deploy/celery.yaml.
BACKEND_ENV = BROKER_ENV


def distributed() -> bool:
    """Whether steps run on Celery workers (else one after another in the run's process)."""
    return bool(os.environ.get(BROKER_ENV))


def step_executor() -> dg.ExecutorDefinition:
    """The executor of ``import_job`` and ``send_due_emails_job`` in this process's environment."""
    if not distributed():
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}},
        name="celery",
    )
