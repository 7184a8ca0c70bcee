"""The route table: its immutable data (`table`), routes.yaml's loader and validation (`loader`) and
writer (`dump`), the registry that merges the file with the admin's store and reloads both (`registry`),
and the pure rules an alias applies to a request (`overrides`, `load_settings`, `durations`,
`downloads`). May import `routing.core` only; it reads the admin's rows through Django's app registry."""
