"""The web routes of subscribing and unsubscribing (Starlette), over :class:`Signup`.

* ``GET /unsubscribe?token=T`` shows a page with an "Unsubscribe" button and
  changes nothing (mail scanners follow links); ``POST`` to the same URL
  unsubscribes: RFC 8058 one-click, no cookie, no login, idempotent. The body
  (``List-Unsubscribe=One-Click``, url-encoded or multipart) is not needed: the
  token is in the URL.
* ``GET /subscribe`` shows the sign-up form (also on the index page when
  SUBSCRIBE_FORM=on); ``POST /subscribe`` (``email=...``, url-encoded) answers
  the same neutral page whatever the address's status, and a confirmation
  mail goes out in the background. Posts from another site's page are
  refused: an ``Origin`` other than BASE_URL's (scheme, host and port; the
  request's ``Host`` does not count), or ``Sec-Fetch-Site: cross-site``. A post
  without ``Origin`` (not a browser form) is accepted; rate limits apply per
  client address, per email address and overall.
* ``GET /confirm?token=T`` shows a "Confirm" button and changes nothing;
  ``POST`` confirms. Confirming twice is harmless.
* ``GET /manage?token=T`` (the "manage your subscription" link of every
  digest and the welcome mail) shows the address's topics (checkboxes: the
  tags of published articles) and cadence; ``POST`` (url-encoded
  ``topics=...&cadence=...``) saves them. Same rules as unsubscribe: the
  signed token (PURPOSE_MANAGE, no age limit) allows it, no cookie, no login.

The posts that carry a token (unsubscribe, confirm) are not checked by
origin: the signed token is what allows them, and RFC 8058 one-click posts come
from mail providers' servers, without ``Origin``, or from any page.

A malformed link is answered 400, a forged, tampered-with or expired one 403,
with a short plain explanation. Every answer of these routes is ``no-store``,
never framed, and sends no Referer (the URL carries the token).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from digest.errors import SubscriberError
from digest.mail.subscribers import Choices
from digest.mail.tokens import PURPOSE_CONFIRM, PURPOSE_UNSUBSCRIBE, TokenError
from digest.model import site_info
from digest.settings import Settings
from digest.templates import environment, render
from digest.web.choices_form import choices_from_form
from digest.web.limits import MAX_BODY
from digest.web.signup import Signup

PAGE_TEMPLATE = "web_page.html"
_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-robots-tag": "noindex",
    "x-frame-options": "DENY",
    "content-security-policy": ("default-src 'none'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}


@dataclass(frozen=True)
class Form:
    action: str
    button: str
    email: bool = False
    topics: tuple[tuple[str, bool], ...] = ()  # (tag slug, checked) offered as checkboxes
    cadence: str | None = None  # the cadence checked; None: no cadence choice


@dataclass(frozen=True)
class Page:
    title: str
    lines: tuple[str, ...]
    form: Form | None = None


class _BodyTooLarge(Exception):
    pass


class SignupRoutes:
    """Request handling; the work is done by a :class:`Signup`."""

    def __init__(self, settings: Settings, signup: Signup, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.signup = signup
        self.clock = clock
        self.site = site_info(settings)
        self.env = environment(settings.templates_dir)
        render(self.env, PAGE_TEMPLATE, {"site": self.site, "page": Page("x", ())})  # fail at start
        self.origin = origin_of(settings.site_url)

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/unsubscribe", self.unsubscribe, methods=["GET", "POST"]),
            Route("/manage", self.manage, methods=["GET", "POST"]),
        ]
        if self.settings.subscribe_form:
            routes += [Route("/subscribe", self.subscribe, methods=["GET", "POST"]),
                       Route("/confirm", self.confirm, methods=["GET", "POST"])]
        return routes

    # -- endpoints -----------------------------------------------------------------------

    async def unsubscribe(self, request: Request) -> Response:
        try:
            token = await self._token(request)
        except _BodyTooLarge:
            return self._too_large()
        now = self.clock()
        title = self.settings.site_title
        try:
            if request.method == "POST":
                address = await run_in_threadpool(self.signup.unsubscribe, token, now)
                return self._page(200, Page("Unsubscribed", (
                    f"{address} will receive no more digests of {title}.",
                    "You can subscribe again at any time.")))
            address = self.signup.check(PURPOSE_UNSUBSCRIBE, token, now)
        except TokenError as exc:
            return self._refused(exc, "unsubscribe")
        return self._page(200, Page("Unsubscribe?", (
            f"Press the button to stop the digest of {title} to {address}.",),
            Form(_action("unsubscribe", token), "Unsubscribe")))

    async def confirm(self, request: Request) -> Response:
        try:
            token = await self._token(request)
        except _BodyTooLarge:
            return self._too_large()
        now = self.clock()
        title = self.settings.site_title
        try:
            if request.method == "POST":
                address, subscribed = await run_in_threadpool(self.signup.confirm, token, now)
                if subscribed:
                    return self._page(200, Page("Subscribed", (
                        f"{address} will receive the digest of {title}.",
                        "Every digest has a link to unsubscribe.")))
                return self._page(409, Page("Not confirmed", (
                    "This sign-up is no longer waiting for confirmation (the address "
                    "unsubscribed or was removed since).",
                    "To subscribe, use the form again; you will get a new mail."),
                    Form(_action("subscribe"), "Subscribe", email=True)))
            address = self.signup.check(PURPOSE_CONFIRM, token, now)
        except TokenError as exc:
            return self._refused(exc, "confirm")
        return self._page(200, Page("Confirm your subscription", (
            f"Press the button to receive the digest of {title} at {address}.",),
            Form(_action("confirm", token), "Confirm")))

    async def manage(self, request: Request) -> Response:
        token = request.query_params.get("token") or ""
        try:
            body = await _body(request) if request.method == "POST" else b""
        except _BodyTooLarge:
            return self._too_large()
        now = self.clock()
        offered = await run_in_threadpool(self.signup.topics)
        try:
            if request.method == "POST":
                if _kind(request) != "application/x-www-form-urlencoded":
                    return self._page(415, Page("Not understood", (
                        "Send the form as application/x-www-form-urlencoded.",)))
                try:
                    choices = choices_from_form(body, offered)
                except SubscriberError as exc:
                    return self._page(400, Page("Not understood", (exc.message + ".",)))
                address, saved = await run_in_threadpool(self.signup.save_choices, token,
                                                         choices, now)
                if saved is None:
                    return self._page(404, Page("Not on the list", (
                        f"{address} is not on the list of {self.settings.site_title}.",)))
                return self._page(200, Page("Saved", (
                    f"{address} gets {_described(saved)}.",)))
            address, found = await run_in_threadpool(self.signup.subscriber, token, now)
        except TokenError as exc:
            return self._refused(exc, "manage")
        if found is None:
            return self._page(404, Page("Not on the list", (
                f"{address} is not on the list of {self.settings.site_title}.",)))
        chosen = set(found.topics)
        state = (f"{address} gets {_described(Choices(found.topics, found.cadence))}."
                 if found.status == "subscribed" else
                 f"{address} is {found.status}: no digest goes to it now.")
        return self._page(200, Page("Your subscription", (
            state, "Choose topics (none: everything) and how often."),
            Form(_action("manage", token), "Save",
                 topics=tuple((t, t in chosen) for t in sorted({*offered, *chosen})),
                 cadence=found.cadence.value)))

    async def subscribe(self, request: Request) -> Response:
        offered = await run_in_threadpool(self.signup.topics)
        form = Form(_action("subscribe"), "Subscribe", email=True,
                    topics=tuple((t, False) for t in offered), cadence="every")
        title = self.settings.site_title
        if request.method != "POST":
            return self._page(200, Page(f"Subscribe to {title}", (
                "Get new articles by email. You will get a mail with a link to confirm.",), form))
        if not self._same_site(request):
            return self._page(403, Page("Not allowed", (
                "The subscribe form must be sent from this site's own pages.",)))
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return self._page(415, Page("Not understood", (
                "Send the form as application/x-www-form-urlencoded.",)))
        try:
            body = await _body(request)
        except _BodyTooLarge:
            return self._too_large()
        try:
            fields = dict(parse_qsl(body.decode("utf-8", "replace"),
                                    max_num_fields=10 + len(offered)))
        except ValueError:
            fields = {}
        try:
            choices = choices_from_form(body, offered)
        except SubscriberError:
            choices = Choices()
        client = request.client.host if request.client else "-"
        try:
            verdict = self.signup.request(fields.get("email", ""), client, self.clock(),
                                          choices)
        except SubscriberError:
            return self._page(400, Page("Not an email address", (
                "Please enter an address of the form name@example.org.",), form))
        if verdict == "client-limited":
            return self._page(429, Page("Too many requests", (
                "This device asked to subscribe too often. Please try again later.",)),
                {"retry-after": "600"})
        if verdict == "busy":
            return self._page(503, Page("Please try later", (
                "Too many sign-ups right now. Please try again in an hour.",)),
                {"retry-after": "3600"})
        return self._page(200, Page("Check your inbox", (
            "If the address can receive mail, a message with a confirmation link is on its "
            "way. Nothing is sent to it until the link is used.",
            "If it is already subscribed, nothing changes.")))

    # -- helpers ------------------------------------------------------------------------

    async def _token(self, request: Request) -> str:
        """The token from the query string, else from a url-encoded body field."""
        token = request.query_params.get("token")
        body = await _body(request) if request.method == "POST" else b""
        if token is None and body:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "application/x-www-form-urlencoded":
                try:
                    token = dict(parse_qsl(body.decode("utf-8", "replace"),
                                           max_num_fields=10)).get("token")
                except ValueError:
                    token = None
        return token or ""

    def _same_site(self, request: Request) -> bool:
        """False for a form post made by another site's page (a browser says so)."""
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not a browser form: only the rate limits apply
        return origin_of(origin) == self.origin

    def _refused(self, exc: TokenError, what: str) -> Response:
        status = 400 if exc.reason == "malformed" else 403
        lines = [f"This {what} link cannot be used: {exc.message}."]
        if what == "confirm":
            lines.append("To subscribe, use the form again; you will get a new link.")
        else:  # unsubscribe and manage links come with every digest mail
            lines.append("Use the link of a more recent digest mail.")
        return self._page(status, Page("Link not valid", tuple(lines)))

    def _too_large(self) -> Response:
        return self._page(413, Page("Request too large", ("The request was too large.",)))

    def _page(self, status: int, page: Page, extra: dict[str, str] | None = None) -> Response:
        text = render(self.env, PAGE_TEMPLATE, {"site": self.site, "page": page})
        headers = dict(_HEADERS)
        headers.update(extra or {})
        return HTMLResponse(text, status_code=status, headers=headers)


def origin_of(url: str) -> str:
    """The origin of a URL as a browser writes it: lowercase scheme://host[:port].

    The port is left out when it is the scheme's default, so BASE_URL
    ``https://Example.org:443/news/`` has the origin ``https://example.org``.
    Anything unreadable (``null``, a bad port) gives "", which matches nothing.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in ("http", "https") or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _kind(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _described(choices: Choices) -> str:
    what = ("the articles on " + ", ".join(choices.topics)) if choices.topics else \
        "every article"
    return f"{what}, {'once a week' if choices.cadence == 'weekly' else 'in every digest'}"


def _action(name: str, token: str | None = None) -> str:
    """A form target relative to the page (works behind a proxy with a path prefix)."""
    return name if token is None else f"{name}?token={quote(token, safe='')}"


async def _body(request: Request) -> bytes:
    """The request body, at most MAX_BODY bytes (else _BodyTooLarge)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise _BodyTooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)
