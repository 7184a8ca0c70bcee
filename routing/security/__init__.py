"""Who may use the API: the head gate (`access`: host, origin, API key, body size, decided from a request's
head), API keys per person (`keys`: hashing, scope, the snapshot the gate consults), the host and origin
policy (`hosts`), and the credentials the proxy never shows (`credentials`).
May import `routing.core` only."""
