"""The repository form: PUT /hosts/{id}/repo or /repo/admin-credentials (settings tab, `p` and `a`)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Input

from rm_tui.screens.form_base import FormError, FormScreen, field_label
from rm_tui.widgets.check import Check


class RepoForm(FormScreen):
    """PUT /hosts/{id}/repo (or /repo/admin-credentials): URL, a generated or typed password,
    optional REST server user/password. The password is never read back from the server."""

    def __init__(self, admin: bool, values: dict[str, Any] | None = None, error: str | None = None,
                 title: str | None = None) -> None:
        super().__init__(values, error)
        self.admin = admin
        self.title_text = title or ("Admin credentials (append-only repositories: prune needs them)" if admin
                                    else "Repository")

    def fields(self) -> ComposeResult:
        v = self.values
        yield field_label("URL (rest:https://…, s3:…, sftp:…, /local/path)")
        yield Input(v.get("url", ""), id="url", placeholder="rest:https://backup.example:8000/web-1")
        yield Check("generate a password (shown once after saving)",
                    bool(v.get("generate_password", not v.get("password"))), id="generate_password")
        yield field_label("or the repository password")
        yield Input(v.get("password", ""), id="password", password=True)
        yield field_label("REST server user (empty: none)")
        yield Input(v.get("rest_user", "") or "", id="rest_user")
        yield field_label("REST server password (empty + generate: generated too)")
        yield Input(v.get("rest_password", "") or "", id="rest_password", password=True)

    def collect(self) -> dict[str, Any]:
        url = self.text("url")
        if not url:
            raise FormError("url", "the repository URL is required")
        generate = self.switch("generate_password")
        password = self.query_one("#password", Input).value
        if generate and password:
            raise FormError("password", "either generate a password or type one, not both")
        if not generate and not password:
            raise FormError("password", "type the repository password, or switch on generate")
        body: dict[str, Any] = {"url": url, "generate_password": generate}
        if password:
            body["password"] = password
        if self.text("rest_user"):
            body["rest_user"] = self.text("rest_user")
            rest_password = self.query_one("#rest_password", Input).value
            if rest_password:
                body["rest_password"] = rest_password
        return body
