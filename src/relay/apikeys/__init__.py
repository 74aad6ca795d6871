"""API keys for the admin API: scoped, stored hashed, revocable."""
