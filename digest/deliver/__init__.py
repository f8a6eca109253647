"""Deliver: schedules, opening and ranking each day's digests, the tick, sending them exactly once."""
