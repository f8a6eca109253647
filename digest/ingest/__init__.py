"""Ingest: read listing files and feeds, fetch configured sources, store one listing per paper."""
