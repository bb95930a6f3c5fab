"""Render a digest edition to a subject, a plain-text body and an HTML body.

Rendering happens once per edition. The per-recipient values (the address
and the unsubscribe link) are rendered as placeholder words
(:data:`RECIPIENT_SLOT`, :data:`UNSUBSCRIBE_SLOT`) that
:mod:`digest.mail_message` replaces for each recipient, so templates may print
them but not transform them (no ``|upper`` on the address).

Template variables (both ``digest.txt`` and ``digest.html``):

    site.title, site.url          the site
    edition.number, edition.date  edition number and its date (YYYY-MM-DD)
    articles                      the newest DIGEST_MAX_ITEMS articles of the
                                  edition, newest first; each has: title, url,
                                  summary, author, published (datetime),
                                  date (YYYY-MM-DD), image (absolute URL of
                                  its first image, or None)
    count, subject, preheader     number of articles in the edition, the subject
                                  line, the hidden preview text of mail clients
    more                          how many articles of the edition are not
                                  listed (0 when all are); site.url has them
    web_url                       the edition's web copy (digests/<n>.html), for
                                  a "view in browser" link; None when there is
                                  no such page (`digest preview`, `digest send
                                  --dry-run` or `--to` before the edition is
                                  made): show the link only ``{% if web_url %}``
    recipient, unsubscribe_url    the recipient's address and one-click link
    manage_url                    the recipient's signed "manage your subscription"
                                  link (topics and cadence)
    unsubscribe_mailto            UNSUBSCRIBE_MAILTO or None
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import css_inline

from digest.errors import TemplateError
from digest.model import DigestItem, article_path, digest_path
from digest.settings import Settings
from digest.templates import environment, render
from digest.words import plural

RECIPIENT_SLOT = "zzdigestrecipientslotzz"
UNSUBSCRIBE_SLOT = "zzdigestunsubscribeslotzz"
MANAGE_SLOT = "zzdigestmanageslotzz"
TEXT_TEMPLATE = "digest.txt"
HTML_TEMPLATE = "digest.html"
CONFIRM_TEMPLATE = "confirm.txt"
PREHEADER_MAX = 150


@dataclass(frozen=True)
class DigestContent:
    number: int
    created_at: datetime
    items: tuple[DigestItem, ...]
    web_copy: bool = True  # False: a preview of an edition not made, without a web page


@dataclass(frozen=True)
class RenderedDigest:
    """Subject and bodies of one edition, with the per-recipient slots still in."""

    subject: str
    text: str
    html: str


def one_line(text: str) -> str:
    """Text on one line: control characters (CR, LF, NUL, ...) become spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def plain_block(text: str) -> str:
    """Text keeping its line breaks, without other control characters."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(one_line(line) for line in lines).strip()


def subject_line(settings: Settings, content: DigestContent) -> str:
    date = content.created_at.astimezone(settings.digest_timezone).date().isoformat()
    count = len(content.items)
    return one_line(settings.digest_subject.format(
        site=settings.site_title, articles=plural(count, "new article"), count=count, date=date))


def listed_items(items: tuple[DigestItem, ...], limit: int) -> list[DigestItem]:
    """The newest `limit` items, newest first (the edition still carries them all)."""
    return sorted(items, key=lambda item: item.published, reverse=True)[:limit]


def render_digest(settings: Settings, content: DigestContent) -> RenderedDigest:
    """Render the text and HTML bodies (CSS inlined) of an edition."""
    env = environment(settings.templates_dir)
    zone = settings.digest_timezone
    subject = subject_line(settings, content)
    listed = listed_items(content.items, settings.digest_max_items)
    articles: list[dict[str, Any]] = [
        {"title": one_line(item.title), "url": settings.url(article_path(item.slug)),
         "summary": plain_block(item.summary), "author": one_line(item.author),
         "published": item.published, "date": item.published.astimezone(zone).date().isoformat(),
         "image": _absolute(settings, item.image)}
        for item in listed
    ]
    preheader = " · ".join(str(a["title"]) for a in articles) or "No new articles"
    if len(preheader) > PREHEADER_MAX:
        preheader = preheader[:PREHEADER_MAX].rsplit(" ", 1)[0] + " …"
    context: dict[str, Any] = {
        "site": {"title": one_line(settings.site_title), "url": settings.site_url},
        "edition": {"number": content.number,
                    "date": content.created_at.astimezone(zone).date().isoformat()},
        "articles": articles,
        "count": len(content.items),
        "more": len(content.items) - len(articles),
        "web_url": settings.url(digest_path(content.number)) if content.web_copy else None,
        "subject": subject,
        "preheader": preheader,
        "recipient": RECIPIENT_SLOT,
        "unsubscribe_url": UNSUBSCRIBE_SLOT,
        "manage_url": MANAGE_SLOT,
        "unsubscribe_mailto": settings.unsubscribe_mailto,
    }
    text = render(env, TEXT_TEMPLATE, context)
    html = inline_css(render(env, HTML_TEMPLATE, context), HTML_TEMPLATE)
    return RenderedDigest(subject=subject, text=normal_newlines(text), html=html)


def inline_css(html: str, template: str) -> str:
    """The HTML with the CSS of its <style> block inlined (mail clients drop <style>)."""
    try:
        inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        return str(inliner.inline(html))
    except (css_inline.InlineError, ValueError) as exc:
        raise TemplateError(f"{template}: cannot inline its CSS ({exc})",
                            "check the <style> block of the template") from exc



def _absolute(settings: Settings, image: str) -> str | None:
    """An image's URL: kept when absolute, else a path in the published site made absolute."""
    if not image:
        return None
    return image if "://" in image else settings.url(image)


def sample_html(settings: Settings, rendered: RenderedDigest, address: str) -> str:
    """The HTML body as a preview shows it: `address` as the recipient, links that sign
    nothing (``token=preview``)."""
    return (rendered.html.replace(RECIPIENT_SLOT, address)
            .replace(UNSUBSCRIBE_SLOT, settings.url("unsubscribe?token=preview"))
            .replace(MANAGE_SLOT, settings.url("manage?token=preview")))


def render_confirmation(settings: Settings, address: str, confirm_url: str) -> str:
    """The text of the double opt-in mail (confirm.txt; variables in its header)."""
    env = environment(settings.templates_dir)
    context = {"site": {"title": one_line(settings.site_title), "url": settings.site_url},
               "address": address, "confirm_url": confirm_url}
    return normal_newlines(render(env, CONFIRM_TEMPLATE, context))


def confirmation_subject(settings: Settings) -> str:
    return f"Confirm your subscription to {one_line(settings.site_title)}"


def normal_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n") + "\n"
