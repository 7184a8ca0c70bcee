"""How model names compare: the route table, the API keys' scopes and the model lists read them alike."""


def normalize_name(name: str) -> str:
    """Ollama treats `x` and `x:latest` as the same model."""
    name = name.strip()
    return name[: -len(":latest")] if name.endswith(":latest") else name
