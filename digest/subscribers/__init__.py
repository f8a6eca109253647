"""Subscribers: subscribing and confirming, votes from the digests' links, topic suggestions."""
