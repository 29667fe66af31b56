"""HTTP: the app shell, the fast path derived from each route, the server, JWTs, Idempotency-Key."""
