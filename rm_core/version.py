"""Versions of the product and of the agent protocol."""

__version__ = "0.1.0"

# The agent protocol version this build speaks, and the oldest the server still accepts.
PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1

# What this agent build understands beyond protocol 1, announced in hello. The server sends
# a message of a feature only to agents that announced it, so an agent one release older (no
# `features`) keeps working. The version is bumped only for an incompatible change.
AGENT_FEATURES = (
    "query",  # live queries: query -> query.result / query.error
    "copy",  # the `copy` credentials slot, the copy job kind, `repo: "copy"` on a job, copy.report
    "rotate_key",  # the rotate_key job kind (repository key rotation)
)
COPY_FEATURE = "copy"
ROTATE_FEATURE = "rotate_key"
