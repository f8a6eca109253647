"""Rank: the feature space, subscribers' profiles and learned models, choosing and explaining papers."""
