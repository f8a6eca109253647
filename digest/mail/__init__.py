"""Mail: rendering, building and transporting messages, signed links, DKIM, the global send rate."""
