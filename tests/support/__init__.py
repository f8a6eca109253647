"""Helpers the tests share: servers, settings, fixtures of data, the app in a browser."""
