"""Versions of the product and of the agent protocol."""

__version__ = "0.1.0"

# The agent protocol version this build speaks, and the oldest the server still accepts.
PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
