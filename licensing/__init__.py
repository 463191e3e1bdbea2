"""License keys, sessions, rate limits and usage analytics (server side)."""
