"""Durable failover and move jobs: journal, steps, runner (reference ha-jobs-style.md B).

* `model`   — states, steps and the pure per-step decisions;
* `journal` — the `gm_jobs` / `gm_job_steps` tables (submit, claim, adopt, intent, record);
* `steps`   — each step as intent → act ("read the device, then act") → record;
* `runner`  — asyncio tasks, one running job per domain group, recovery on becoming active.
"""

from __future__ import annotations

from .journal import Job, JobJournal, JobRequest, StepRecord
from .model import JobState, JobType, Step, StepFailed
from .runner import JobRunner, crash_hook
from .steps import StepContext, drive

__all__ = [
    "Job",
    "JobJournal",
    "JobRequest",
    "JobRunner",
    "JobState",
    "JobType",
    "Step",
    "StepContext",
    "StepFailed",
    "StepRecord",
    "crash_hook",
    "drive",
]
