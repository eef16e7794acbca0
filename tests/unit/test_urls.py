"""rm_core.urls: the one place that hides and merges repository URL credentials."""

from __future__ import annotations

import pytest

from rm_core import restic
from rm_core.urls import redact_url, repository_url


def test_repository_url_merges_rest_credentials_only_for_rest() -> None:
    assert repository_url("rest:http://h:8000/repo/", "u", "p@ss/w") == "rest:http://u:p%40ss%2Fw@h:8000/repo/"
    assert repository_url("rest:https://old:x@h/r", "u", "p") == "rest:https://u:p@h/r"
    assert repository_url("/srv/repo", "u", "p") == "/srv/repo"
    assert repository_url("rest:http://h/r") == "rest:http://h/r"


@pytest.mark.parametrize("url, secret", [
    ("rest:https://user:s3cret@host/", "s3cret"),
    ("rest:https://user:ab/cd@host/", "ab/cd"),      # a slash in the password
    ("rest:https://user:ab cd@host/", "ab cd"),      # a space in the password
    ("rest:https://user:p@ss@host:8000/r", "p@ss"),  # an unquoted @ in the password
    ("s3:https://key:se/cr et@minio.example:9000/bucket", "se/cr et"),
])
def test_redact_url_hides_the_whole_password(url: str, secret: str) -> None:
    out = redact_url(url)
    assert out == url.replace(f":{secret}@", ":***@"), out
    assert restic.redact(f"Fatal: cannot open {url}: denied") == f"Fatal: cannot open {out}: denied"


def test_redact_url_leaves_urls_without_password_alone() -> None:
    for url in ("rest:https://host:8000/repo/", "/srv/repo", "sftp:user@host:/srv", "rest:http://u@h/r"):
        assert redact_url(url) == url
