"""Templates: escaping only where HTML is produced, strict variables, both languages."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from event_pipeline.mail.render import TemplateRenderer

NASTY = "<script>alert('x')</script> & \"Co\""


def welcome_context(name: str) -> dict[str, object]:
    return {
        "participant": {"name": name},
        "event": {"name": "Dev <Conf>", "starts_at": "2026-12-10 09:00", "location": "Seoul", "slug": "dev"},
        "checkin_url": "https://checkin.example.test/t/abc?x=1&y=2",
        "qr_cid": "checkin-qr",
    }


def test_html_is_escaped_and_text_and_subject_are_literal() -> None:
    out = TemplateRenderer().render("welcome", "en", welcome_context(NASTY))

    assert NASTY in out.text
    assert out.subject == "[Dev <Conf>] You are registered"
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;Co&#34;" in out.html
    assert "<script>" not in out.html and "Dev &lt;Conf&gt;" in out.html
    assert 'href="https://checkin.example.test/t/abc?x=1&amp;y=2"' in out.html
    assert 'src="cid:checkin-qr"' in out.html


def test_korean_and_fallback_to_english() -> None:
    renderer = TemplateRenderer()

    ko = renderer.render("welcome", "ko", welcome_context("김민준"))
    other = renderer.render("welcome", "fr", welcome_context("Ada"))

    assert ko.subject == "[Dev <Conf>] 참가 등록이 완료되었습니다"
    assert ko.text.startswith("김민준님, 안녕하세요.") and '<html lang="ko">' in ko.html
    assert "이 메일은 행사 참가 등록 시스템에서 자동으로 발송되었습니다." in ko.html
    assert other.subject == "[Dev <Conf>] You are registered" and '<html lang="en">' in other.html


def test_a_missing_variable_is_an_error_not_a_blank() -> None:
    context = welcome_context("Ada")
    del context["checkin_url"]

    with pytest.raises(jinja2.UndefinedError, match="checkin_url"):
        TemplateRenderer().render("welcome", "en", context)


def test_subject_newlines_cannot_inject_headers(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    for name, body in {"subject": "Hi {{ name }}", "txt": "{{ name }}", "html": "{{ name }}"}.items():
        (tmp_path / "x" / f"en.{name}.j2").write_text(body, encoding="utf-8")

    out = TemplateRenderer(tmp_path).render("x", "en", {"name": "Ada\r\nBcc: evil@example.org"})

    assert "\n" not in out.subject and "\r" not in out.subject


@pytest.mark.parametrize("kind", ["welcome", "import_complete", "import_failed"])
@pytest.mark.parametrize("language", ["ko", "en"])
def test_every_kind_has_every_part_in_both_languages(kind: str, language: str) -> None:
    root = TemplateRenderer().directory
    for part in ("subject", "txt", "html"):
        assert (root / kind / f"{language}.{part}.j2").is_file()
