"""Bounces that come back after the SMTP session: VERP return paths, reading the reports, acting on them."""
