"""The public sign-up page, /join, as a Flask blueprint: the program's terms, a phone form, then
a code form. It works without JavaScript and needs no sign-in; every form carries a CSRF token
(Flask-WTF), and every refusal is a message on the page with nothing sent."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, render_template, request
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField

from jobs.optin.service import Answer, SignUp
from jobs.rules.optin import MESSAGES, Program, Refusal

# Refusals the person can fix on the page are 400; limits are 429; a pause is 503.
STATUS = {Refusal.NUMBER_HOURLY: 429, Refusal.NUMBER_DAILY: 429, Refusal.CLIENT_HOURLY: 429,
          Refusal.PAUSED: 503}  # fmt: skip
EXPIRED_FORM = "This form has expired or did not come from this page. Reload it and try again."
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
MAX_FIELD_CHARS = 64


class PhoneForm(FlaskForm):  # type: ignore[misc]
    phone = StringField("Mobile number")
    consent = BooleanField("I agree")


class CodeForm(FlaskForm):  # type: ignore[misc]
    request_id = HiddenField()
    phone = HiddenField()
    code = StringField("Code")


def blueprint(signup: Callable[[], SignUp], program: Program) -> Blueprint:
    """The /join pages; `signup` gives the sign-up service (built lazily, per app)."""
    pages = Blueprint("optin", __name__, template_folder="templates")

    def page(template: str, status: int = 200, **context: object) -> Response:
        html = render_template(
            f"optin/{template}", program=program, terms=program.terms().splitlines(), **context
        )
        return Response(html, status=status, mimetype="text/html")

    def client() -> str:
        return request.remote_addr or "unknown"

    def agent() -> str:
        return request.user_agent.string or ""

    @pages.after_request
    def secure(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    @pages.get("/join")
    def join() -> Response:
        return page("join.html", form=PhoneForm())

    @pages.post("/join")
    def ask() -> Response:
        form = PhoneForm()
        if not form.validate_on_submit():
            return page("join.html", 400, form=form, error=EXPIRED_FORM)
        answer = signup().request(
            _field(form.phone.data), form.consent.data is True, client(), agent()
        )
        if answer.refusal is not None:
            status = STATUS.get(answer.refusal, 400)
            return page("join.html", status, form=form, error=answer.message,
                        refusal=answer.refusal.value)  # fmt: skip
        return _code_page(page, answer, _field(form.phone.data))

    @pages.post("/join/confirm")
    def confirm() -> Response:
        form = CodeForm()
        if not form.validate_on_submit():
            return page("join.html", 400, form=PhoneForm(formdata=None), error=EXPIRED_FORM)
        typed = _field(form.phone.data)
        answer = signup().confirm(
            _field(form.request_id.data), typed, _field(form.code.data), client(), agent()
        )
        if answer.refusal is None:
            return page("done.html")
        status = STATUS.get(answer.refusal, 400)
        if answer.refusal in (Refusal.EXPIRED, Refusal.TOO_MANY_TRIES):
            return page("join.html", status, form=PhoneForm(formdata=None),
                        error=answer.message, refusal=answer.refusal.value)  # fmt: skip
        again = Answer(request_id=_field(form.request_id.data), number=answer.number)
        return _code_page(page, again, typed, error=MESSAGES[answer.refusal], status=status,
                          refusal=answer.refusal.value)  # fmt: skip

    return pages


def _field(value: object) -> str:
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) else ""


def _code_page(
    page: Callable[..., Response], answer: Answer, typed: str, status: int = 200,
    **context: object,
) -> Response:  # fmt: skip
    form = CodeForm(formdata=None, request_id=answer.request_id, phone=typed)
    return page("code.html", status, form=form, typed=typed, **context)
