"""Re-encrypting the stored secrets under the newest key of RELAY_ENCRYPTION_KEY."""
