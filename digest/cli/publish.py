"""Commands: publish, check."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from digest import exit_codes
from digest.cli.support import Context, handling_signals, now, pass_ctx
from digest.errors import ArticleError, Stopped, shown_path
from digest.publish import build as publishing
from digest.service.reports import plural

PROGRESS_THRESHOLD = 500  # show a progress bar from this many articles on


@contextmanager
def progress_bar(ctx: Context) -> Iterator[publishing.Progress]:
    """A progress callback that draws a bar on stderr once the work is large enough."""
    bars: dict[str, Any] = {}
    shown: dict[str, int] = {}

    def update(phase: str, done: int, total: int) -> None:
        if ctx.quiet or total < PROGRESS_THRESHOLD:
            return
        if phase not in bars:
            label = {"read": "reading ", "write": "writing ", "check": "checking"}.get(phase, phase)
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bars[phase] = bar.__enter__()
            shown[phase] = 0
        bars[phase].update(done - shown[phase])
        shown[phase] = done
        if done >= total:
            bars.pop(phase).__exit__(None, None, None)

    try:
        yield update
    finally:
        for bar in bars.values():
            bar.__exit__(None, None, None)


def report_problems(problems: tuple[ArticleError, ...]) -> None:
    for problem in problems:
        click.secho(f"problem: {problem.message}", fg="yellow", err=True)
        if problem.hint:
            click.echo(f"  hint: {problem.hint}", err=True)


@click.command()
@pass_ctx
def publish(ctx: Context) -> None:
    """Publish ARTICLES_DIR as feeds and a static site in OUTPUT_DIR.

    Only new and changed files are read; unchanged output files are left
    untouched. Exit codes: 0 done, 1 failed (previous output kept), 2 bad
    setting, 3 published but some articles were skipped (see the problems),
    143 stopped by SIGTERM (the output is the previous one or the new one).
    """
    settings = ctx.settings
    with _stop_on_sigterm(), ctx.store() as store, progress_bar(ctx) as progress:
        report = publishing.publish(settings, store, now(), progress)
    report_problems(report.problems)
    if report.nothing_changed:
        ctx.echo(f"published {plural(report.published, 'article')}: nothing changed -> "
                 f"{_shown(report.output_dir)}")
    else:
        extras = [f"{report.new} new", f"{report.updated} updated"]
        if report.removed:
            extras.append(f"{report.removed} removed")
        if report.scheduled:
            extras.append(f"{report.scheduled} scheduled")
        if report.drafts:
            extras.append(plural(report.drafts, "draft"))
        ctx.echo(f"published {plural(report.published, 'article')}: {', '.join(extras)} -> "
                 f"{_shown(report.output_dir)}")
    if report.problems:
        ctx.echo(f"{plural(len(report.problems), 'problem')}: see above, or run `digest check`")
        raise SystemExit(exit_codes.PROBLEMS)


@click.command()
@pass_ctx
def check(ctx: Context) -> None:
    """Read every article and template and report all problems; write nothing.

    Exits 0 when everything would publish cleanly, 3 when there are problems.
    """
    settings = ctx.settings
    with progress_bar(ctx) as progress:
        report = publishing.check(settings, now(), progress)
    report_problems(report.problems)
    summary = (f"{plural(report.articles, 'article file')}: {report.published} to publish, "
               f"{report.scheduled} scheduled, {plural(report.drafts, 'draft')}, "
               f"{plural(len(report.problems), 'problem')}")
    ctx.echo(summary)
    if report.problems:
        raise SystemExit(exit_codes.PROBLEMS)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (as `timeout` and service managers send it) unwinds the publish: reader
    processes and the partial output are cleaned up. A second SIGTERM ends it at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Stopped("publish stopped by SIGTERM; OUTPUT_DIR shows the previous output, or the "
                      "new one if it was already swapped in, never a mix",
                      "run `digest publish` again to finish the work")

    with handling_signals((signal.SIGTERM,), handler):
        yield


def _shown(path: object) -> str:
    from pathlib import Path

    assert isinstance(path, Path)
    try:
        return shown_path(path.relative_to(Path.cwd())) + "/"
    except ValueError:
        return shown_path(path) + "/"
