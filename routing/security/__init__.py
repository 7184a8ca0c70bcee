"""Who may use the API: the head gate (`access`: host, origin, API key, body size, decided from a request's
head), the host and origin policy (`hosts`), and the credentials the proxy never shows (`credentials`).
May import `routing.core` only."""
