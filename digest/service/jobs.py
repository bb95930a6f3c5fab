"""What the scheduled jobs do: publish, send the digest, fetch bounces (with BOUNCE_IMAP_URL).

Each job takes a :class:`JobContext` and returns a :class:`JobResult` (a
one-line summary and an outcome) for the log and `digest status`; errors
propagate as exceptions, and the scheduler logs and records them. The
scheduler receives the jobs as a mapping, so tests inject their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from digest.mail.bounces import ACTED
from digest.mail.imap import fetch_bounces
from digest.mail.send import SendReport, send_digest
from digest.mail.smtp import SMTPMailer
from digest.publish import build as publishing
from digest.publish.web_copy import publish_digest_pages
from digest.service.reports import delivery_counts, plural
from digest.settings import Settings
from digest.store.database import Store
from digest.store.runs import OK, PROBLEMS, STOPPED

log = logging.getLogger("digest.schedule")

PUBLISH = "publish"
SEND = "send-digest"
FETCH = "fetch-bounces"


@dataclass(frozen=True)
class JobContext:
    """What a job run gets: settings, the store, its start time and a stop flag."""

    settings: Settings
    store: Store
    now: datetime
    should_stop: Callable[[], bool]


@dataclass(frozen=True)
class JobResult:
    summary: str
    outcome: str = OK  # ok, problems or stopped


Job = Callable[[JobContext], JobResult]


def publish_job(ctx: JobContext) -> JobResult:
    """Publish ARTICLES_DIR. It is not interrupted: a publish swaps its output only at the end."""
    report = publishing.publish(ctx.settings, ctx.store, ctx.now)
    if report.nothing_changed:
        summary = f"{plural(report.published, 'article')}, nothing changed"
    else:
        summary = (f"{plural(report.published, 'article')}: {report.new} new, {report.updated} updated, "
                   f"{report.removed} removed, {plural(report.files_written, 'file')} written")
        for problem in report.problems:  # logged when they appear, not at every interval
            log.warning("publish: %s%s", problem.message,
                        f" (hint: {problem.hint})" if problem.hint else "",
                        extra={"job": PUBLISH})
    if report.problems:
        return JobResult(f"{summary}; {plural(len(report.problems), 'problem')} "
                         "(`digest check` lists them)", PROBLEMS)
    return JobResult(summary)


def send_job(ctx: JobContext) -> JobResult:
    """Send (or resume) the digest edition; stops between messages when asked to.

    The edition's web copy goes online before its first message goes out."""
    report = send_digest(ctx.settings, ctx.store, lambda: SMTPMailer(ctx.settings), ctx.now,
                         should_stop=ctx.should_stop,
                         before_delivery=lambda _: publish_digest_pages(ctx.settings,
                                                                        ctx.store))
    return send_result(report)


def send_result(report: SendReport) -> JobResult:
    if report.edition is None:
        return JobResult("no new articles: nothing to send")
    summary = (f"edition {report.edition} ({plural(report.articles, 'article')}, "
               f"{plural(report.recipients, 'recipient')}): {delivery_counts(report)}, "
               f"{report.remaining} remaining"
               + (f", {report.unknown} unknown (reply lost after the data)"
                  if report.unknown else ""))
    for failure in report.failures:
        log.warning("send-digest: delivery to %s failed: %s", failure.recipient, failure.reply,
                    extra={"job": SEND})
    if report.stopped:
        return JobResult(summary + "; stopped, the next run resumes it", STOPPED)
    if not report.ok:
        return JobResult(summary, PROBLEMS)
    return JobResult(summary)


def fetch_job(ctx: JobContext) -> JobResult:
    """Read the unseen messages of BOUNCE_IMAP_URL (as `digest bounces fetch`)."""
    summary = fetch_bounces(ctx.settings, ctx.store, ctx.now)
    counts = summary.counts()
    for outcome in summary.outcomes:
        if outcome.result in ACTED:
            log.info("fetch-bounces: %s %s: %s", outcome.address, outcome.result,
                     outcome.detail, extra={"job": FETCH})
    return JobResult(f"{plural(len(summary.outcomes), 'message')}: "
                     + ", ".join(f"{counts[r]} {r}" for r in (*ACTED, "unrecognised",
                                                              "unmatched", "unreadable")))


def job_names(settings: Settings) -> tuple[str, ...]:
    """The jobs `digest run` schedules with these settings."""
    return (PUBLISH, SEND, FETCH) if settings.bounce_imap is not None else (PUBLISH, SEND)


DEFAULT_JOBS: Mapping[str, Job] = {PUBLISH: publish_job, SEND: send_job, FETCH: fetch_job}
