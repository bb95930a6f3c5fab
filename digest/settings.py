"""Settings: one frozen value built from a mapping of strings.

Only the CLI reads the process environment and ``.env``; it hands the merged
mapping to :func:`load_settings`. Every setting is declared once in
:data:`SPECS` with its parser, default and a one-line description; the README
table and ``.env.example`` are checked against that list by the tests.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import idna

from digest.addresses import Mailbox, normalize_address, parse_mailbox
from digest.errors import ConfigError, SubscriberError

_DURATION = re.compile(r"^\s*([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*(ms|s|m|h|d)?\s*$",
                       re.IGNORECASE | re.ASCII)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTEGER = re.compile(r"^\s*([+-]?[0-9][0-9_]{0,30})\s*$", re.ASCII)
_HOST = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")
_DATABASE = re.compile(r"^([a-z0-9]+)(?:\+([a-z0-9_]+))?://", re.IGNORECASE)
_DRIVERS = {"sqlite": ("", "pysqlite"), "postgresql": ("", "psycopg", "psycopg2")}
SUBJECT_FIELDS = ("site", "articles", "count", "date")
FEEDBACK_ID_FIELDS = ("edition", "host")
FEEDBACK_ID_MAX = 200  # characters of the template; the header stays one short line
_FEEDBACK_LITERAL = re.compile(r"^[!-~]*$", re.ASCII)  # printable ASCII, no space
BASE_URL_MAX = 300  # octets, encoded: the List-Unsubscribe line (URL + token) stays < 998
TEXT_MAX = 1000  # characters of a title or subject


@dataclass(frozen=True)
class ImapMailbox:
    """BOUNCE_IMAP_URL parsed: where `digest bounces fetch` reads returned messages."""

    security: str  # "ssl" (imaps://) or "starttls" (imap://): always TLS
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    mailbox: str = "INBOX"


@dataclass(frozen=True)
class Settings:
    """Everything digest needs to know, parsed and validated."""

    base_dir: Path
    base_url: str
    site_title: str
    site_subtitle: str
    site_author: str
    site_language: str
    site_timezone: ZoneInfo
    feed_id: str | None
    articles_dir: Path
    output_dir: Path
    templates_dir: Path | None
    database_url: str
    feed_max_items: int
    max_article_bytes: int
    smtp_host: str
    smtp_port: int | None
    smtp_security: str
    smtp_username: str | None
    smtp_password: str | None = field(repr=False)
    smtp_timeout: float = 30.0
    smtp_rate_limit: float | None = None
    smtp_ca_file: Path | None = None
    smtp_connections: int = 4
    digest_from: Mailbox | None = None
    digest_recipients: tuple[str, ...] = ()
    digest_subject: str = "{site}: {articles}"
    digest_max_items: int = 30
    unsubscribe_mailto: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    publish_interval: float = 300.0
    digest_schedule: str = "0 7 * * *"
    digest_timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    misfire_grace_time: float = 3600.0
    leader_lease: float = 30.0
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    subscribe_form: bool = False
    max_asset_bytes: int = 50 * 1024 * 1024
    bounce_soft_days: int = 7
    weekly_day: int = 0  # Monday = 0 ... Sunday = 6 (date.weekday())
    feedback_id: str = "{edition}:digest:{host}"
    bounce_address: str | None = None
    bounce_imap: ImapMailbox | None = field(default=None, repr=False)
    bounce_imap_done: str = "delete"
    bounce_fetch_interval: float = 600.0

    @property
    def site_url(self) -> str:
        """BASE_URL with exactly one trailing slash."""
        return self.base_url.rstrip("/") + "/"

    def url(self, path: str) -> str:
        """Absolute URL of a path inside the published site."""
        return self.site_url + path.lstrip("/")

    @property
    def smtp_effective_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {"ssl": 465, "starttls": 587}.get(self.smtp_security, 25)


@dataclass(frozen=True)
class Spec:
    """One setting: its environment name, the field it fills, how to parse it."""

    env: str
    field: str
    default: str
    help: str
    parse: Callable[[str, str, Path], Any]
    secret: bool = False


def _text(name: str, value: str, base: Path) -> str:
    return value.strip()


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


def _language(name: str, value: str, base: Path) -> str:
    """A language tag (BCP 47: en, pt-BR, zh-Hant): the pages' lang and the feeds' language.
    A locale's underscore (en_US) is read as the hyphen it stands for."""
    tag = value.strip().replace("_", "-")
    if not _LANGUAGE_TAG.fullmatch(tag):
        raise ConfigError(f"{name}={value!r} is not a language tag",
                          f"set {name} to a language code, e.g. {name}=en or {name}=pt-BR")
    return tag


def _optional_text(name: str, value: str, base: Path) -> str | None:
    return value.strip() or None


def _path(name: str, value: str, base: Path) -> Path:
    if not value.strip():
        raise ConfigError(f"{name} is empty", f"set {name} to a folder path, e.g. {name}=public")
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else base / path


def _optional_path(name: str, value: str, base: Path) -> Path | None:
    return _path(name, value, base) if value.strip() else None


def _bounded_text(name: str, value: str, base: Path) -> str:
    text = value.strip()
    if len(text) > TEXT_MAX:
        raise ConfigError(f"{name} is longer than {TEXT_MAX} characters",
                          f"shorten {name}")
    return text


def _required_text(hint: str) -> Callable[[str, str, Path], str]:
    """Text that must not be empty (an empty SITE_TITLE broke the feeds, an empty SMTP_HOST
    failed as a 'temporary' connection error, an empty SERVE_HOST listened on every
    interface); `hint` says what to set, the default is named after it."""

    def parse(name: str, value: str, base: Path) -> str:
        text = _bounded_text(name, value, base)
        if not text:
            raise ConfigError(f"{name} is empty", hint)  # load_settings names the default
        return text

    return parse


def _url(name: str, value: str, base: Path) -> str:
    """An absolute http(s) URL in ASCII: IDNA host, percent-encoded path."""
    example = f"set {name} to the public address of the site, e.g. {name}=https://example.org/news/"
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a valid URL (check the host and port)",
                          example) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={value!r} is not an absolute http(s) URL", example)
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ConfigError(f"{name}={value!r} must not have a query or fragment",
                          f"set {name} to the folder URL the site is served from")
    if parts.username is not None or any(not c.isprintable() for c in value.strip()):
        raise ConfigError(f"{name}={value!r} has a user name or control characters",
                          example)
    host = parts.hostname
    if host.startswith("[") or ":" in host:
        netloc_host = f"[{host}]"  # an IPv6 literal, as urlsplit checked it
    else:
        try:
            ascii_host = host if _HOST.match(host) else idna.encode(
                host, uts46=True, transitional=False).decode("ascii")
        except (UnicodeError, ValueError):
            raise ConfigError(f"{name}={value!r}: {host!r} is not a valid host name",
                              example) from None
        netloc_host = ascii_host.lower()
    netloc = netloc_host + (f":{port}" if port is not None else "")
    path = re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", parts.path)
    path = quote(path, safe="/%:@!$&'()*+,;=-._~")
    url = urlunsplit((parts.scheme.lower(), netloc, path or "/", "", ""))
    if len(url) > BASE_URL_MAX:
        raise ConfigError(f"{name} is longer than {BASE_URL_MAX} characters once encoded",
                          "use a shorter address for the site")
    return url


_URL_PASSWORD = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^:@/]*):(.*)@", re.DOTALL)


def shown_database_url(value: str) -> str:
    """A DATABASE_URL as it may appear in a message: any password replaced by ***.

    Works on text no parser accepts, too (a bad port, no scheme): everything between
    the user name's colon and the last '@' is the password, as it may itself hold '@'.
    """
    return _URL_PASSWORD.sub(r"\1:***@", value.strip(), count=1)


def _database_url(name: str, value: str, base: Path) -> str:
    """sqlite:/// or postgresql:// (checked here, without importing SQLAlchemy).

    The value is shown in messages with its password masked (:func:`shown_database_url`).
    """
    text = value.strip()
    shown = shown_database_url(text)
    match = _DATABASE.match(text)
    hint = (f"set {name}=sqlite:///digest.sqlite3 or "
            f"{name}=postgresql://user@host:5432/dbname (the only supported databases)")
    if not match:
        raise ConfigError(f"{name}={shown!r} is not a database URL", hint)
    backend, driver = match.group(1).lower(), (match.group(2) or "").lower()
    if backend not in _DRIVERS or driver not in _DRIVERS[backend]:
        raise ConfigError(f"{name}={shown!r}: {match.group(0)[:-3]} is not supported", hint)
    if backend == "sqlite" and _in_memory(text[match.end():]):
        raise ConfigError(f"{name}={shown!r} is a database in memory: what digest records "
                          "(subscribers, editions, what was published) would be gone when "
                          "the command ends",
                          f"set {name}=sqlite:///digest.sqlite3 (a file in this folder)")
    return text


def _in_memory(rest: str) -> bool:
    """Whether the part of a SQLite URL after '://' names no file (SQLAlchemy then opens a
    database in memory): empty, '/', ':memory:', a 'file::memory:' URI, 'mode=memory'."""
    path, _, query = rest.partition("?")
    database = path[1:] if path.startswith("/") else path
    return (database in ("", ":memory:") or database.startswith("file::memory:")
            or "mode=memory" in query)


def _int_parser(minimum: int, maximum: int) -> Callable[[str, str, Path], int]:
    def parse(name: str, value: str, base: Path) -> int:
        match = _INTEGER.match(value)
        if not match:
            raise ConfigError(f"{name}={value!r} is not a whole number",
                              f"set {name} to a whole number from {minimum} to {maximum}")
        number = int(match.group(1).replace("_", ""))
        if not minimum <= number <= maximum:
            raise ConfigError(f"{name}={value!r} is out of range",
                              f"set {name} to a whole number from {minimum} to {maximum}")
        return number

    return parse


def _optional_port(name: str, value: str, base: Path) -> int | None:
    return _int_parser(1, 65535)(name, value, base) if value.strip() else None


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def parse_duration(name: str, value: str, minimum: float = 0.001,
                   maximum: float = 7 * 86400.0) -> float:
    """Seconds from '300', '90s', '5m', '2h', '1d' or '250ms', within [minimum, maximum]."""
    match = _DURATION.match(value)
    if not match:
        raise ConfigError(f"{name}={value!r} is not a duration",
                          f"set {name} to seconds or a number with a unit: 30s, 5m, 2h, 1d")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not minimum <= seconds <= maximum:
        raise ConfigError(f"{name}={value!r} is out of range",
                          f"set {name} to a duration from {_span(minimum)} to {_span(maximum)}")
    return seconds


def _duration_parser(minimum: float, maximum: float) -> Callable[[str, str, Path], float]:
    def parse(name: str, value: str, base: Path) -> float:
        return parse_duration(name, value, minimum, maximum)

    return parse


RATE_MIN, RATE_MAX = 0.01, 10000.0


def _optional_rate(name: str, value: str, base: Path) -> float | None:
    if not value.strip():
        return None
    hint = (f"set {name} to messages per second from {RATE_MIN:g} to {RATE_MAX:g} "
            "(e.g. 10), or leave it empty for no limit")
    if not re.fullmatch(r"\s*[0-9]{1,6}(\.[0-9]{1,6})?\s*", value, re.ASCII):
        raise ConfigError(f"{name}={value!r} is not a number", hint)
    rate = float(value)
    if not (math.isfinite(rate) and RATE_MIN <= rate <= RATE_MAX):
        raise ConfigError(f"{name}={value!r} is out of range", hint)
    return rate


def _flag(name: str, value: str, base: Path) -> bool:
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not on or off",
                      f"set {name} to on or off (also: yes/no, true/false, 1/0)")


def _zone(name: str, value: str, base: Path) -> ZoneInfo:
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a known time zone",
                          f"set {name} to an IANA zone name such as UTC or Europe/Berlin") from None


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(name: str, value: str, base: Path) -> int:
    word = value.strip().lower()
    for number, day in enumerate(WEEKDAYS):
        if word in (day, day[:3]):
            return number
    raise ConfigError(f"{name}={value!r} is not a day of the week",
                      f"set {name} to one of {', '.join(WEEKDAYS)}")


def _security(name: str, value: str, base: Path) -> str:
    mode = value.strip().lower()
    if mode not in ("starttls", "ssl", "none"):
        raise ConfigError(f"{name}={value!r} is not one of starttls, ssl, none",
                          f"set {name}=starttls (port 587), ssl (port 465) or none (local relay)")
    return mode


def _optional_mailbox(name: str, value: str, base: Path) -> Mailbox | None:
    """'Display Name <addr>' or an address, parsed as the From header is built."""
    if not value.strip():
        return None
    try:
        return parse_mailbox(value, name)
    except SubscriberError as exc:
        raise ConfigError(exc.message, exc.hint) from None


def _optional_address(name: str, value: str, base: Path) -> str | None:
    """A bare address (a display name, if given, is dropped)."""
    mailbox = _optional_mailbox(name, value, base)
    return mailbox.address if mailbox else None


def _addresses(name: str, value: str, base: Path) -> tuple[str, ...]:
    parts = [p for p in re.split(r"[,\s;]+", value) if p]
    try:
        return tuple(dict.fromkeys(normalize_address(p, name) for p in parts))
    except SubscriberError as exc:
        raise ConfigError(exc.message, f"{exc.hint}; separate addresses with commas") from None


def _subject(name: str, value: str, base: Path) -> str:
    hint = ("use only the placeholders {site}, {articles}, {count} and {date} "
            "(write {{ and }} for braces)")
    text = _bounded_text(name, value, base)
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} has a stray brace ({exc})", hint) from None
    for _literal, field_name, spec, conversion in fields:
        if field_name is None:
            continue
        if field_name not in SUBJECT_FIELDS or spec or conversion:
            raise ConfigError(f"{name}={value!r} has an unknown placeholder "
                              f"{{{field_name}{'!' + conversion if conversion else ''}"
                              f"{':' + spec if spec else ''}}}", hint)
    return text


def _feedback_id(name: str, value: str, base: Path) -> str:
    """A Feedback-ID template: printable ASCII without spaces, placeholders {edition}, {host}."""
    text = value.strip()
    hint = ("use printable ASCII without spaces and only the placeholders {edition} and "
            "{host}, e.g. {edition}:digest:{host} (empty: no Feedback-ID header)")
    if len(text) > FEEDBACK_ID_MAX:
        raise ConfigError(f"{name} is longer than {FEEDBACK_ID_MAX} characters", hint)
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} has a stray brace ({exc})", hint) from None
    for literal, field_name, spec, conversion in fields:
        if not _FEEDBACK_LITERAL.match(literal):
            raise ConfigError(f"{name}={value!r} has a space or a character outside "
                              "printable ASCII", hint)
        if field_name is not None and (field_name not in FEEDBACK_ID_FIELDS or spec
                                       or conversion):
            raise ConfigError(f"{name}={value!r} has an unknown placeholder {{{field_name}}}",
                              hint)
    return text


def _bounce_address(name: str, value: str, base: Path) -> str | None:
    """A bare ASCII address without '+' in its local part (VERP adds +token)."""
    address = _optional_address(name, value, base)
    if address is None:
        return None
    if not address.isascii() or "+" in address.rpartition("@")[0]:
        raise ConfigError(f"{name}={value!r} cannot carry a VERP token",
                          f"set {name} to a plain ASCII address without '+', e.g. "
                          f"{name}=bounces@example.org")
    return address


def _imap_url(name: str, value: str, base: Path) -> ImapMailbox | None:
    """imaps://user:password@host[:port]/MAILBOX (TLS) or imap://... (STARTTLS required)."""
    text = value.strip()
    if not text:
        return None
    example = (f"set {name}=imaps://user:password@imap.example.org/INBOX (percent-encode "
               "special characters in the user name and password)")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL (check the host and port)", example) from None
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps") or not parts.hostname:
        raise ConfigError(f"{name} must start with imaps:// (or imap://, then with STARTTLS)",
                          example)
    if not parts.username or parts.password is None or parts.query or parts.fragment:
        raise ConfigError(f"{name} needs a user name and password, and no query", example)
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    fields = (unquote(parts.username), unquote(parts.password), mailbox)
    if any(not f.isprintable() or len(f) > 500 for f in fields):
        raise ConfigError(f"{name} has control characters or overlong parts", example)
    return ImapMailbox("ssl" if scheme == "imaps" else "starttls", parts.hostname,
                       port or (993 if scheme == "imaps" else 143), *fields)


def _imap_done(name: str, value: str, base: Path) -> str:
    text = value.strip() or "delete"
    if not text.isprintable() or len(text) > 200 or '"' in text or "\\" in text:
        raise ConfigError(f"{name}={value!r} is not a mailbox name",
                          f"set {name}=delete or to a folder name such as Processed")
    return text


def _cron(name: str, value: str, base: Path) -> str:
    # Imported here, not at the top: digest.cron pulls in APScheduler, which only the
    # commands that read settings need, never `digest --help`. (Not a hidden cycle.)
    from digest.cron import CronError, parse_schedule

    try:
        return parse_schedule(value, ZoneInfo("UTC")).expression
    except CronError as exc:
        raise ConfigError(f"{name}={value!r} is not a crontab expression: {exc}",
                          f"set {name} to five fields: minute hour day month weekday, "
                          "e.g. '0 7 * * *' (daily at 07:00) or '30 6 * * mon' "
                          "(weekday 0 or 7 = Sunday)") from None


SPECS: tuple[Spec, ...] = (
    Spec("BASE_URL", "base_url", "http://127.0.0.1:8080/",
         "public URL the site is served from; every absolute link is built from it (a "
         "non-ASCII host or path is encoded; at most 300 characters)", _url),
    Spec("SITE_TITLE", "site_title", "digest", "title of the site, feeds and digest",
         _required_text("set SITE_TITLE to the name of the site, e.g. SITE_TITLE=Example News")),
    Spec("SITE_SUBTITLE", "site_subtitle", "New articles", "subtitle of the feeds", _text),
    Spec("SITE_AUTHOR", "site_author", "digest", "default author of articles and feeds", _text),
    Spec("SITE_LANGUAGE", "site_language", "en",
         "language code of the site and feeds (en, pt-BR)", _language),
    Spec("SITE_TIMEZONE", "site_timezone", "UTC",
         "time zone of article dates written without one (IANA name)", _zone),
    Spec("FEED_ID", "feed_id", "",
         "permanent id of the feed (default: made from BASE_URL at the first publish and kept "
         "in the state store)", _optional_text),
    Spec("ARTICLES_DIR", "articles_dir", "articles", "folder of article files", _path),
    Spec("OUTPUT_DIR", "output_dir", "public", "folder the site and feeds are written to", _path),
    Spec("TEMPLATES_DIR", "templates_dir", "templates",
         "folder of your Jinja2 templates; missing ones fall back to the built-in set",
         _optional_path),
    Spec("DATABASE_URL", "database_url", "sqlite:///digest.sqlite3",
         "state store: sqlite:///file.sqlite3 or postgresql://user@host/db", _database_url),
    Spec("FEED_MAX_ITEMS", "feed_max_items", "50",
         "entries in the feed; older ones move to archive feeds", _int_parser(1, 10000)),
    Spec("MAX_ARTICLE_BYTES", "max_article_bytes", "1048576",
         "larger article files are refused (64 to 1073741824)",
         _int_parser(64, 1 << 30)),
    Spec("SMTP_HOST", "smtp_host", "localhost", "SMTP server for the digest",
         _required_text("set SMTP_HOST to the name of the SMTP server, e.g. "
                        "SMTP_HOST=smtp.example.org")),
    Spec("SMTP_PORT", "smtp_port", "",
         "SMTP port (default: 587 for starttls, 465 for ssl, 25 for none)", _optional_port),
    Spec("SMTP_SECURITY", "smtp_security", "starttls",
         "starttls, ssl or none", _security),
    Spec("SMTP_USERNAME", "smtp_username", "", "SMTP login (empty: no AUTH)", _optional_text),
    Spec("SMTP_PASSWORD", "smtp_password", "", "SMTP password; never logged",
         _optional_text, secret=True),
    Spec("SMTP_TIMEOUT", "smtp_timeout", "30s",
         "SMTP network timeout, 100ms to 1h (connecting, each command; "
         "the reply to a message's data is awaited up to 10 minutes)",
         _duration_parser(0.1, 3600.0)),
    Spec("SMTP_RATE_LIMIT", "smtp_rate_limit", "",
         "most messages per second, 0.01 to 10000 (empty: no limit)", _optional_rate),
    Spec("SMTP_CONNECTIONS", "smtp_connections", "4",
         "SMTP sessions one process sends over at once, 1 to 50 (fewer when the server "
         "answers 'too many connections')", _int_parser(1, 50)),
    Spec("SMTP_CA_FILE", "smtp_ca_file", "",
         "PEM file of CA certificates to trust for the SMTP server's TLS "
         "(empty: the system's)", _optional_path),
    Spec("DIGEST_FROM", "digest_from", "",
         "From address of the digest, e.g. News <news@example.org> or "
         '"Acme News, Weekly" <news@acme.org>', _optional_mailbox),
    Spec("DIGEST_RECIPIENTS", "digest_recipients", "",
         "addresses added to the subscribers at each send (comma separated; normalised like "
         "every address: lower case, IDNA domain)", _addresses),
    Spec("DIGEST_SUBJECT", "digest_subject", "{site}: {articles}",
         "subject of the digest; placeholders {site}, {articles} ('1 new article', "
         "'3 new articles'), {count}, {date} only", _subject),
    Spec("DIGEST_MAX_ITEMS", "digest_max_items", "30",
         "most articles one digest message lists (the newest); it counts the rest and "
         "links to the site", _int_parser(1, 10000)),
    Spec("UNSUBSCRIBE_MAILTO", "unsubscribe_mailto", "",
         "address for mailto: unsubscribe requests (optional)", _optional_address),
    Spec("SECRET_KEY", "secret_key", "",
         "signs unsubscribe and confirmation links; required to send and serve", _optional_text,
         secret=True),
    Spec("PUBLISH_INTERVAL", "publish_interval", "5m",
         "how often `digest run` publishes (seconds, or 30s, 5m, 1h; 100ms to 7d)",
         _duration_parser(0.1, 7 * 86400.0)),
    Spec("DIGEST_SCHEDULE", "digest_schedule", "0 7 * * *",
         "crontab (minute hour day month weekday) for the digest; weekday 0 or 7 = Sunday, "
         "1 = Monday, or names sun-sat", _cron),
    Spec("DIGEST_TIMEZONE", "digest_timezone", "UTC", "time zone of DIGEST_SCHEDULE", _zone),
    Spec("MISFIRE_GRACE_TIME", "misfire_grace_time", "1h",
         "a digest missed while down is still sent if the service is back within this "
         "(1s to 7d)", _duration_parser(1.0, 7 * 86400.0)),
    Spec("LEADER_LEASE", "leader_lease", "30s",
         "with PostgreSQL, several `digest run` nodes elect one scheduler leader; another "
         "takes over within this once it dies (3s to 1h)", _duration_parser(3.0, 3600.0)),
    Spec("SERVE_HOST", "serve_host", "127.0.0.1", "address `digest serve` listens on",
         _required_text("set SERVE_HOST=127.0.0.1 (this machine only) or SERVE_HOST=0.0.0.0 "
                        "(every interface)")),
    Spec("SERVE_PORT", "serve_port", "8080", "port `digest serve` listens on",
         _int_parser(1, 65535)),
    Spec("SUBSCRIBE_FORM", "subscribe_form", "off",
         "on: the index page has a subscribe form and `digest serve` takes sign-ups (double "
         "opt-in by mail; needs DIGEST_FROM and SMTP)", _flag),
    Spec("MAX_ASSET_BYTES", "max_asset_bytes", "52428800",
         "larger files beside the articles (images, PDFs, audio, video) are refused "
         "(1 to 17179869184)", _int_parser(1, 1 << 34)),
    Spec("BOUNCE_SOFT_DAYS", "bounce_soft_days", "7",
         "an address the server keeps deferring (4xx) for this many days without a "
         "success in between becomes bounced (1 to 365)", _int_parser(1, 365)),
    Spec("WEEKLY_DAY", "weekly_day", "monday",
         "the day (in DIGEST_TIMEZONE) whose first digest edition (or the next one, if none "
         "is made that day) also goes to weekly subscribers, gathering everything new for "
         "them since their last message",
         _weekday),
    Spec("FEEDBACK_ID", "feedback_id", "{edition}:digest:{host}",
         "Feedback-ID header of digest mail for mailbox providers' complaint loops; "
         "placeholders {edition} and {host} (of BASE_URL); empty: no such header",
         _feedback_id),
    Spec("BOUNCE_ADDRESS", "bounce_address", "",
         "envelope sender of digest mail, as bounces+<signed token>@domain per message, so a "
         "bounce names its recipient (empty: DIGEST_FROM's address, no VERP)", _bounce_address),
    Spec("BOUNCE_IMAP_URL", "bounce_imap", "",
         "mailbox `digest bounces fetch` reads, imaps://user:password@host/INBOX (or imap:// "
         "with STARTTLS; TLS always)", _imap_url, secret=True),
    Spec("BOUNCE_IMAP_DONE", "bounce_imap_done", "delete",
         "what `digest bounces fetch` does with a message it acted on: delete, or a folder "
         "to move it to (others are only marked seen)", _imap_done),
    Spec("BOUNCE_FETCH_INTERVAL", "bounce_fetch_interval", "10m",
         "how often `digest run` runs `digest bounces fetch` when BOUNCE_IMAP_URL is set "
         "(1m to 1d)", _duration_parser(60.0, 86400.0)),
)

ENV_NAMES = frozenset(spec.env for spec in SPECS)


def load_settings(values: Mapping[str, str], base_dir: Path) -> Settings:
    """Build Settings from string values (environment merged over .env).

    Unknown keys are ignored; missing keys take their defaults; a malformed
    value raises ConfigError naming the setting and the expected form.
    """
    parsed: dict[str, Any] = {"base_dir": base_dir}
    for spec in SPECS:
        raw = values.get(spec.env)
        try:
            parsed[spec.field] = spec.parse(spec.env, spec.default if raw is None else raw,
                                            base_dir)
        except ConfigError as exc:
            if raw is None or raw.strip() or not spec.default:
                raise
            # An empty line (`FEED_MAX_ITEMS=`) is a value, not the default: say how to get it.
            hint = f"{exc.hint}; " if exc.hint else ""
            raise ConfigError(exc.message, f"{hint}or remove the line for the default, "
                                           f"{spec.default}") from None
    return Settings(**parsed)


def require(settings: Settings, env: str, purpose: str) -> None:
    """Raise ConfigError if the setting named `env` is empty."""
    spec = next(s for s in SPECS if s.env == env)
    value = getattr(settings, spec.field)
    if value in (None, "", ()):
        raise ConfigError(f"{env} is not set; it is needed {purpose}",
                          f"add {env}=... to .env or the environment (see .env.example)")
