"""`digest check`: read every article and every template as a publish would; write nothing."""

from __future__ import annotations

from datetime import datetime

import jinja2

from digest import templates
from digest.errors import ArticleError
from digest.model import Article, article_path
from digest.publish import assets, digests, identity
from digest.publish import scan as scanning
from digest.publish.feeds import feed_id, feed_meta
from digest.publish.records import feed_check, read_file, remember, status_of
from digest.publish.reports import CheckReport, Progress
from digest.settings import Settings

TEMPLATES = ("index.html", "article.html", "tag.html", "tags.html", "feed.html",
             *digests.TEMPLATES)


def check(settings: Settings, now: datetime, progress: Progress | None = None) -> CheckReport:
    """Read every article and every template; write nothing."""
    env = templates.environment(settings.templates_dir)
    problems: list[ArticleError] = []
    for name in TEMPLATES:
        try:
            env.get_template(name)
        except jinja2.TemplateError as exc:
            problems.append(ArticleError(f"template {name}", str(exc), "fix the template"))
    found = scanning.scan(settings.articles_dir, settings.max_asset_bytes)
    problems.extend(found.problems)
    meta = feed_meta(settings, feed_id(settings))
    read: list[Article] = []
    for done, source in enumerate(found.sorted_files(), 1):
        try:
            article = read_file(source, settings)
            feed_check(article, remember(article, source, None, now), settings, meta)
            read.append(article)
            problems.extend(ArticleError(source.key, w, "fix the file") for w in article.warnings)
        except ArticleError as exc:
            problems.append(exc)
        if progress:
            progress("check", done, len(found.files))
    unique, duplicates = identity.unique({a.key: (a.id, a.slug) for a in read})
    kept = [a for a in read if a.key in unique]
    problems.extend(duplicates)
    statuses = [status_of(a, now) for a in kept]
    problems.extend(assets.clashes(found.assets, {
        article_path(a.slug) for a, status in zip(kept, statuses, strict=True)
        if status == "published"}))
    return CheckReport(
        articles=len(found.files), published=statuses.count("published"),
        drafts=statuses.count("draft"), scheduled=statuses.count("scheduled"),
        problems=tuple(problems),
    )
