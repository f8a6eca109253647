"""Turn an email's templates and a context into its subject, plain text and HTML.

Email clients ignore or strip `<style>` blocks, so the HTML must carry its CSS in `style` attributes.
Running premailer on every rendered email costs tens of milliseconds, which is most of the sending time
across 100,000 subscribers. The Jinja source of each `body.html` is therefore inlined once, when the
template is first loaded (and again only when the file changes): every Jinja construct is swapped for a
placeholder premailer leaves alone, premailer runs over the template's own markup, and the constructs
are put back before Jinja compiles the result. This is equivalent to inlining each rendered email as long
as the CSS only uses selectors that do not depend on how many times a loop ran (type, class and
descendant selectors; no `:first-child`, `+` or `~`), which holds because autoescaping keeps the
rendered values from adding elements. `tests/unit/mail/test_rendering.py` checks that equivalence.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import quote

from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateNotFound, select_autoescape
from jinja2.loaders import split_template_path
from premailer import Premailer

from digest.mail.links import CONFIRM_MAX_AGE_SECONDS

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"

_EMAIL_NAME = re.compile(r"[a-z][a-z0-9_]*")
_JINJA_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_TAG_NAME = re.compile(r"[A-Za-z0-9]*")
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="[^"]*"')
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SHOWN_AUTHORS = 3
# A paper's snippet in the digest: two or three lines on a desktop, about four on a phone.
SNIPPET_CHARS = 220


class TemplateInlineError(ValueError):
    """The template puts Jinja where its CSS cannot be inlined ahead of rendering; the message says where."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def inline_css(html: str) -> str:
    """The one place premailer is configured, so the ahead-of-time and per-email paths cannot drift apart.

    `!important` stays in the leftover `<style>`: the `@media` rules kept there must beat inline styles.
    """
    premailer = Premailer(
        allow_network=False,
        disable_validation=True,  # email-only properties such as mso-hide are not in cssutils' tables
        strip_important=False,
        exclude_pseudoclasses=True,
        # Keep the authored width="600" for Outlook, which ignores CSS max-width.
        disable_basic_attributes=["width", "height"],
    )
    # premailer writes "a:b; c:d"; the spaces cost a kilobyte and more in a long digest (Gmail's size limit).
    return _STYLE_ATTRIBUTE.sub(
        lambda m: m.group(0).replace("; ", ";"), str(premailer.transform(html, pretty_print=False))
    )


def inline_template_css(source: str) -> str:
    """Inline the CSS of a Jinja HTML template without letting lxml or premailer see any Jinja."""
    if "\x00" in source:
        raise TemplateInlineError("the template contains a NUL character")
    nonce = secrets.token_hex(6)
    while nonce in source:
        nonce = secrets.token_hex(6)
    constructs: list[str] = []

    def stash(match: re.Match[str]) -> str:
        constructs.append(match.group(0))
        return f"\x00{len(constructs) - 1}\x00"

    tokenized = _JINJA_CONSTRUCT.sub(stash, source)
    marked = _place_markers(tokenized, nonce)
    inlined = inline_css(marked)

    def restore(match: re.Match[str]) -> str:
        return constructs[int(match.group(1))]

    # Comment markers first: their inner text would otherwise match as an attribute marker.
    comment_marker = re.compile(rf"<!--jinja{nonce}x(\d+)x-->")
    bare_marker = re.compile(rf"jinja{nonce}x(\d+)x")
    found = [int(i) for i in comment_marker.findall(inlined)]
    restored = comment_marker.sub(restore, inlined)
    found += [int(i) for i in bare_marker.findall(restored)]
    if sorted(found) != list(range(len(constructs))):
        missing = sorted(set(range(len(constructs))) - set(found))
        lost = ", ".join(repr(constructs[i]) for i in missing) or "a construct came out twice"
        raise TemplateInlineError(f"CSS inlining mangled these Jinja constructs: {lost}")
    return bare_marker.sub(restore, restored)


def _place_markers(tokenized: str, nonce: str) -> str:  # noqa: C901, PLR0912, PLR0915 - a single pass over the tokens; splitting it would scatter its state
    """Choose, for each stashed construct, a marker that survives where it stands in the HTML.

    Between tags an HTML comment is safe even inside `<table>` or `<head>`, where bare text would make
    the parser move things. Comments are not parsed inside attribute values, `<title>` or other comments,
    so there a plain alphanumeric word is used: lxml neither escapes nor percent-encodes it.
    """
    out: list[str] = []
    state = "text"
    resume = "tag"
    raw_text_end = ""
    position = 0
    length = len(tokenized)
    while position < length:
        char = tokenized[position]
        if char == "\x00":
            end = tokenized.index("\x00", position + 1)
            index = tokenized[position + 1 : end]
            if state == "text":
                out.append(f"<!--jinja{nonce}x{index}x-->")
            elif state in ("double", "single", "comment", "rcdata"):
                out.append(f"jinja{nonce}x{index}x")
            elif state == "rawtext":
                raise TemplateInlineError(f"Jinja inside <{raw_text_end[2:]}> cannot be CSS-inlined")
            else:
                raise TemplateInlineError(
                    "Jinja inside a tag must be within a quoted attribute value, near "
                    f"{tokenized[max(0, position - 40) : position]!r}"
                )
            position = end + 1
            continue
        if state == "text" and tokenized.startswith("<!--", position):
            state = "comment"
            out.append("<!--")
            position += 4
            continue
        if state == "text" and char == "<" and position + 1 < length:
            following = tokenized[position + 1]
            if following.isalpha() or following in "/!?":
                state = "tag"
                tag_name = _TAG_NAME.match(tokenized, position + 1)
                name = tag_name.group(0).lower() if tag_name else ""
                if name in ("style", "script"):
                    raw_text_end = f"</{name}"
                    state = "tag-before-rawtext"
                elif name in ("title", "textarea"):
                    raw_text_end = f"</{name}"
                    state = "tag-before-rcdata"
        elif state == "comment" and tokenized.startswith("-->", position):
            out.append("-->")
            position += 3
            state = "text"
            continue
        elif state in ("tag", "tag-before-rawtext", "tag-before-rcdata"):
            if char == '"':
                state, resume = "double", state
            elif char == "'":
                state, resume = "single", state
            elif char == ">":
                state = {"tag": "text", "tag-before-rawtext": "rawtext", "tag-before-rcdata": "rcdata"}[state]
        elif (state == "double" and char == '"') or (state == "single" and char == "'"):
            state = resume
        elif (
            state in ("rawtext", "rcdata")
            and tokenized[position : position + len(raw_text_end)].lower() == raw_text_end
        ):
            state = "tag"
        out.append(char)
        position += 1
    return "".join(out)


class _InliningLoader(BaseLoader):
    """Loads templates from one directory, CSS-inlining `.html` ones as they are (re)loaded.

    Jinja keeps the compiled template and asks `uptodate` before each use, so a template is inlined
    once per modification time of its file.
    """

    def __init__(self, root: Path, *, preinline: bool) -> None:
        self.root = root
        self.preinline = preinline

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        path = self.root.joinpath(*split_template_path(template))
        try:
            # The time is read before the text: an edit racing the read only causes a later reload.
            mtime = path.stat().st_mtime_ns
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateNotFound(template) from None
        if self.preinline and path.suffix == ".html":
            source = inline_template_css(source)

        def uptodate() -> bool:
            try:
                return path.stat().st_mtime_ns == mtime
            except OSError:
                return False

        return source, str(path), uptodate


def one_line(value: object) -> str:
    """Keep text from breaking the line-oriented plain-text format or a header."""
    return " ".join(str(value).split())


def _text_url(value: object) -> str:
    return re.sub(r"\s", lambda m: quote(m.group(0)), str(value).strip())


def long_date(value: date) -> str:
    """English names whatever the process locale, as in 'Mon 23 Nov 2026'."""
    return f"{_WEEKDAYS[value.weekday()]} {value.day} {_MONTHS[value.month - 1]} {value.year}"


def short_date(value: date) -> str:
    """A paper's date in its meta line, as in '23 Nov 2026': the weekday would only take room."""
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def _short_authors(authors: list[str]) -> str:
    names = [one_line(a) for a in authors if str(a).strip()]
    if len(names) > _SHOWN_AUTHORS:
        return ", ".join(names[:_SHOWN_AUTHORS]) + " et al."
    return ", ".join(names)


@lru_cache(maxsize=8192)
def meta_line(
    authors: tuple[str, ...], arxiv_id: str | None, category: str | None, published: date | None
) -> str:
    """A paper's authors, arXiv id, primary category and date, as far as they are known, on one line.

    Cached: the same paper's line is shown to every subscriber who gets the paper."""
    parts = [
        _short_authors(list(authors)),
        f"arXiv:{arxiv_id}" if arxiv_id else "",
        one_line(category or ""),
        short_date(published) if published else "",
    ]
    return " · ".join(part for part in parts if part)


def is_web_url(value: object) -> TypeGuard[str]:
    """Only http(s) URLs are linked: a stored URL is whatever a source sent (javascript:, file:, ...)."""
    return isinstance(value, str) and value.strip().lower().startswith(("https://", "http://"))


class Renderer:
    def __init__(self, templates_dir: Path, *, preinline: bool = True, organisation: str = "") -> None:
        """`preinline=False` leaves CSS in `<style>`; it exists to check the inlined output against.

        `organisation` (the DIGEST_ORGANISATION setting) is named in the footer of every email, whichever
        code built its context."""
        self.templates_dir = templates_dir
        self._env = Environment(
            loader=_InliningLoader(templates_dir / "email", preinline=preinline),
            autoescape=select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=True,
        )
        self._env.filters.update(
            oneline=one_line,
            text_url=_text_url,
            long_date=long_date,
            short_date=short_date,
            short_authors=_short_authors,
        )
        self._env.tests["web_url"] = is_web_url
        self._env.globals["confirm_valid_days"] = CONFIRM_MAX_AGE_SECONDS // 86400
        self._env.globals["organisation"] = organisation

    @classmethod
    def default(cls, *, organisation: str = "") -> Renderer:
        return cls(TEMPLATES_DIR, organisation=organisation)

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        if not _EMAIL_NAME.fullmatch(name):
            raise ValueError(f"not an email template name: {name!r}")
        subject = self._env.get_template(f"{name}/subject.txt").render(context)
        text = self._env.get_template(f"{name}/body.txt").render(context)
        html = self._env.get_template(f"{name}/body.html").render(context)
        return RenderedEmail(subject=one_line(subject), text=text, html=html)


@lru_cache(maxsize=8192)
def trim_abstract(text: str, limit: int = SNIPPET_CHARS) -> str:
    """Keep the digest scannable: two or three lines per paper, never cutting a word in half.

    Cached: the same paper's abstract is trimmed for every subscriber who gets it."""
    if limit < 2:
        raise ValueError("limit must leave room for at least one character and the ellipsis")
    flat = one_line(text)
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if flat[limit - 1] != " ":
        boundary = cut.rfind(" ")
        if boundary > 0:
            cut = cut[:boundary]
    return cut.rstrip(" ,;:.-–—") + "…"
