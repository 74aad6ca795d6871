"""The terminal client: `relay sources|subscriptions|events|deliveries|recover|tail|stats` talk
to a running relay over its REST API."""
