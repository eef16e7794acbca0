"""The host screen's tabs, one widget each: it owns its data, gets the host as an attribute
and posts messages up (rm_tui/messages.py); rm_tui/screens/host.py composes them."""
