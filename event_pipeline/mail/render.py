"""Jinja2 rendering of ``templates/<kind>/<language>.{subject,txt,html}.j2``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

FOOTERS = {
    "ko": "이 메일은 행사 참가 등록 시스템에서 자동으로 발송되었습니다.",
    "en": "This message was sent automatically by the event registration system.",
}


def templates_dir() -> Path:
    env = os.environ.get("EVENT_PIPELINE_TEMPLATES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "templates"


def template_language(language: str) -> str:
    """The language whose templates an event's ``language`` gets: its own if there are any, else English."""
    return language if language in FOOTERS else "en"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class TemplateRenderer:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or templates_dir()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.directory),
            # Escape only HTML: the text part and subject must show "<b>" literally.
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            auto_reload=False,  # templates do not change under a running process; skips a stat per render
        )
        self._templates: dict[str, tuple[jinja2.Template, dict[str, Any]]] = {}

    def render(self, kind: str, language: str, context: Mapping[str, Any]) -> Rendered:
        lang = template_language(language)
        subject = self._render(f"{kind}/{lang}.subject.j2", context)
        subject = " ".join(subject.split())  # headers cannot hold newlines
        text = self._render(f"{kind}/{lang}.txt.j2", context)
        html_ctx = {"language": lang, "title": subject, "footer": FOOTERS[lang], **context}
        html = self._render(f"{kind}/{lang}.html.j2", html_ctx)
        return Rendered(subject=subject, text=text.strip() + "\n", html=html)

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        """``Template.render``, minus what it redoes for every call: the template lookup and the
        merge of the template's globals (a ChainMap, slow to copy) into the context. Three renders
        per welcome mail made this a tenth of the mail's CPU."""
        found = self._templates.get(name)
        if found is None:
            template = self.env.get_template(name)
            found = self._templates[name] = (template, dict(template.globals))
        template, merged_globals = found
        ctx = template.new_context({**merged_globals, **context}, shared=True)
        return self.env.concat(template.root_render_func(ctx))


@cache
def default_renderer() -> TemplateRenderer:
    return TemplateRenderer()
