"""Command: status (whether `digest run` runs, each job's next and last run)."""

from __future__ import annotations

from datetime import datetime

import click

from digest.cli.support import Context, now, pass_ctx
from digest.service import lock as service_lock
from digest.service.scheduler import local_time
from digest.service.status import (
    EditionProgress,
    JobStatus,
    NodeStatus,
    ServiceStatus,
    service_status,
)
from digest.settings import Settings
from digest.store import runs as job_runs
from digest.words import plural


@click.command()
@pass_ctx
def status(ctx: Context) -> None:
    """Show whether `digest run` runs, and each job's next run time and last result.

    Then each open edition's progress (else the last edition's): sent,
    pending, claimed, unknown, failed, skipped, and which sender (pid and
    host) holds the claimed deliveries.
    """
    settings = ctx.settings
    moment = now()
    holder = service_lock.holder(settings.database_url, settings.base_dir, moment)
    with ctx.store() as store:
        report = service_status(settings, store, moment, holder)
    if report.holder is not None:
        click.echo(f"service: running ({report.holder})")
    else:
        click.echo("service: not running (start it with `digest run`)")
    width = max(len(job.job) for job in report.jobs)
    for job in report.jobs:
        click.echo(f"{job.job:<{width}}  {job.schedule}")
        click.echo(f"{'':<{width}}  next: {_next(job, settings, moment, report.running)}")
        click.echo(f"{'':<{width}}  last: {_last(job, settings)}")
    if report.nodes:
        click.echo(_nodes(report, moment))
        for node in report.nodes:
            click.echo("  " + _node(node, moment))
    for edition in report.editions:
        click.echo(_edition(edition))
        for holder, count in edition.claimed:
            click.echo(f"  {count} being sent by {holder}")


def _nodes(report: ServiceStatus, moment: datetime) -> str:
    """'nodes: 3 (1 stale); leader: pid 42 on mail-1'."""
    stale = sum(1 for n in report.nodes if n.stale)
    leader = next((n.node for n in report.nodes if n.node.role == "leader" and not n.stale),
                  None)
    named = (f"pid {leader.pid} on {leader.host}" if leader is not None
             else "none (an alive node takes over within LEADER_LEASE)")
    return (f"nodes: {len(report.nodes)}" + (f" ({stale} stale)" if stale else "")
            + f"; leader: {named}")


def _node(status: NodeStatus, moment: datetime) -> str:
    """'leader    pid 42 on mail-1, started ..., last heartbeat 2 s ago: alive'."""
    node = status.node
    ago = max(0.0, (moment - node.heartbeat).total_seconds())
    role = "gone" if status.stale else node.role  # a stale node leads or follows no more
    return (f"{role:<8}  pid {node.pid} on {node.host}, started "
            f"{node.started_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat {ago:.0f} s ago: "
            + ("stale" if status.stale else "alive"))


def _edition(edition: EditionProgress) -> str:
    """'edition 3 (sending, 1000 recipients): 400 sent, 500 pending, 100 claimed, ...'."""
    return (f"edition {edition.id} ({edition.status}, "
            f"{plural(edition.recipient_count, 'recipient')}): "
            f"{edition.sent} sent, {edition.pending} pending, {edition.sending} claimed, "
            f"{edition.unknown} unknown, {edition.failed} failed, {edition.skipped} skipped")


def _next(job: JobStatus, settings: Settings, moment: datetime, running: bool) -> str:
    if job.next_run is None:
        return "at the start of `digest run`" if not running else "not scheduled"
    shown = local_time(job.next_run, settings)
    if not running:
        return f"{shown} (when `digest run` runs)"
    if job.next_run < moment:
        return f"{shown} (due now)"
    return shown


def _last(job: JobStatus, settings: Settings) -> str:
    last = job.last
    if last is None or last.outcome == job_runs.NEVER:
        return "never run"
    when = local_time(last.started_at, settings)
    if last.outcome == job_runs.RUNNING:
        return f"running since {when} (or the process died)"
    took = f" in {last.duration:.2f} s" if last.duration is not None else ""
    return f"{last.outcome} at {when}{took}: {last.summary}"
