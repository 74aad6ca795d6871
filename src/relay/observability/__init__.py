"""Prometheus metrics of the relay: counters kept by the process doing the work, gauges read
from the database at scrape time."""
