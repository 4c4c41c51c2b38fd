"""Opt-in confirmed by the phone: the /join page, the JOIN keyword, and the consent evidence."""
