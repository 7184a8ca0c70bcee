"""The API's views, thin: model requests name their dialect and endpoint and hand over to the pipeline
(`views`); model listings (`listings`), `/api/create` (`create`), `/api/copy` and `/api/delete`
(`aliases`), health, readiness, metrics and JSON error pages (`ops`), and the endpoints routes.yaml
declares (`declared`). The top layer: may import every layer below."""
