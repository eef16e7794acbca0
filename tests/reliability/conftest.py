"""The agent tests' real-restic fixtures (a template repository, sources, an event recorder)."""

from tests.agent.conftest import _template_repo, recorder, repo, source  # noqa: F401
