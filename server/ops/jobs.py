"""The jobs API: every job with its schedule, holder and last run; run one now. What
each answers (server.web.operations), beside the render_* that builds it.

The handlers reach the gateway's job runner as self.settings["jobs"] (server.api.app
make_app): a run asked for here goes through the job's lease like any other, whether
or not this process runs the job loops."""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields

from server.jobs.runner import FAILED, OK, SKIPPED, JobRunner, RunReport
from server.jobs.status import JobStatus, LastRun, job_statuses
from server.kernel.errors import Conflict, NotFound
from server.kernel.schemas import iso_stamp
from server.web import answer_schemas as answers
from server.web.handler import BaseHandler
from server.web.operations import ADMIN, AUTH, STAFF, Operation

SUMMARY = (
    "What the run did, counts by name (e.g. `expired` for expire-debits, `replayed` "
    "for replay-inbox); empty when the run failed"
)
# The keys of a run's answer besides its summary's counts, which never replace them.
RUN_KEYS = ("job", "outcome", "duration_ms", "error")


class LastRunSchema(Schema):
    holder = answers.text(nullable=True, metadata={"description": "the process that ran it"})
    started_at = answers.stamp()
    finished_at = answers.stamp(nullable=True)
    outcome = answers.one_of([OK, FAILED])
    summary = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": SUMMARY, "example": {"expired": 2}},
    )
    error = answers.text(nullable=True, metadata={"description": "why it failed"})


class JobSchema(Schema):
    name = answers.text(metadata={"example": "expire-debits"})
    interval_seconds = fields.Float(required=True)
    next_due_at = answers.stamp(
        nullable=True,
        metadata={"description": "when it next runs; null until a process has scheduled it"},
    )
    holder = answers.text(
        nullable=True,
        metadata={"description": "the process running it now (holding its lease), if any"},
    )
    lease_expires_at = answers.stamp(
        nullable=True, metadata={"description": "when the holder's lease runs out"}
    )
    last_run = answers.nested(LastRunSchema, nullable=True)


class JobListSchema(Schema):
    items = answers.list_of(JobSchema)


class JobRunSchema(Schema):
    """A run's answer: these keys, and beside them one integer per count of the run's
    summary (e.g. `"expired": 2`)."""

    job = answers.text(metadata={"example": "expire-debits"})
    outcome = answers.one_of([OK, FAILED])
    duration_ms = fields.Float(required=True)
    error = answers.text(
        nullable=True, metadata={"description": "why it failed (`outcome` failed)"}
    )

    class Meta:
        unknown = INCLUDE
        # The summary's counts (server.ops.openapi documents them so).
        additional_properties = {
            "type": "integer",
            "description": "one count of what the run did (e.g. `expired` for "
            "expire-debits); none when the run failed",
        }


def render_last_run(run: LastRun) -> dict[str, Any]:
    return {
        "holder": run.holder,
        "started_at": iso_stamp(run.started_at),
        "finished_at": iso_stamp(run.finished_at),
        "outcome": run.outcome,
        "summary": run.summary,
        "error": run.error,
    }


def render_job(status: JobStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "interval_seconds": status.interval.total_seconds(),
        "next_due_at": iso_stamp(status.next_due_at),
        "holder": status.holder,
        "lease_expires_at": iso_stamp(status.lease_expires_at),
        "last_run": None if status.last_run is None else render_last_run(status.last_run),
    }


def render_run(report: RunReport) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "job": report.name,
        "outcome": report.outcome,
        "duration_ms": report.duration_ms,
        "error": report.error,
    }
    answer.update((name, count) for name, count in report.summary.items() if name not in RUN_KEYS)
    return answer


class JobsHandler(BaseHandler):
    operations = {
        "get": Operation(
            "Every job of the gateway: its interval, next run, holder and last run",
            "jobs",
            JobListSchema,
            roles=STAFF,
            errors=AUTH,
            description="Sorted by name. The last run is the one kept on the job's lease "
            "(or, when the lease keeps none, the newest in the run history), whichever "
            "process made it.",
        )
    }

    async def get(self) -> None:
        await self.require_role(*STAFF)
        statuses = await job_statuses(self.settings["jobs"])
        self.write_json({"items": [render_job(status) for status in statuses]})


class JobRunHandler(BaseHandler):
    path_parameters = {"name": "The job's name, as GET /api/v1/jobs lists it"}
    operations = {
        "post": Operation(
            "Run a job now",
            "jobs",
            JobRunSchema,
            roles=ADMIN,
            errors=(*AUTH, 404, 409),
            description="The job runs now, due or not, through its lease like any run "
            "(its next run moves one interval on), and is recorded in its history. It "
            "never runs beside a run in progress: then 409 `job_running`, with the "
            "process holding the lease in `details.holder`. A run that fails answers "
            "200 with `outcome` `failed` and the `error`: the job was run, and failed. "
            "No body is read.",
        )
    }

    async def post(self, name: str) -> None:
        await self.require_role(*ADMIN)
        runner: JobRunner = self.settings["jobs"]
        if name not in runner.jobs:
            raise NotFound(
                f"no job named {name}", {"jobs": sorted(runner.jobs)}, code="unknown_job"
            )
        report = await runner.run_now(name)
        if report.outcome == SKIPPED:
            raise Conflict(
                f"job {name} is running: {report.held_by} holds its lease",
                {"holder": report.held_by},
                code="job_running",
            )
        self.write_json(render_run(report))
