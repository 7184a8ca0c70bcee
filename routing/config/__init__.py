"""The route table: its immutable data (`table`), routes.yaml's loader and validation (`loader`) and
writer (`dump`), the registry that merges the file with the admin's store and reloads both (`registry`),
the pure rules an alias applies to a request (`overrides`, `messages`, `load_settings`, `durations`,
`downloads`), and Ollama's Modelfiles (`modelfile`) and `/api/create`'s request (`creation`). May import
`routing.core` only; it reads the admin's rows through Django's app registry."""
