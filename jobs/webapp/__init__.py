"""The web app: OpenID Connect sign-in, campaigns, recipients, compose, audit and a JSON API."""

from jobs.webapp.app import create_app
from jobs.webapp.config import WebConfig

__all__ = ["WebConfig", "create_app"]
