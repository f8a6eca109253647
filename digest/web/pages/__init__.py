"""The subscriber-facing pages, one router per part of a reader's life with the service."""
