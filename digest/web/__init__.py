"""The HTTP side of digest: pages that links in emails lead to, and the subscribe form."""

from digest.web.app import create_app

__all__ = ["create_app"]
