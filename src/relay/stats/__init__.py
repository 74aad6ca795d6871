"""GET /v1/stats: the last hour's and day's delivery numbers, overall and per subscription."""
