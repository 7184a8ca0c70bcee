"""Where a model can be downloaded from: an alias's `download:` (routes.yaml and the admin), and the
model names `ollama pull` sends, as LM Studio's download API takes them.

LM Studio 0.4 downloads either a catalog id (`google/gemma-3-1b`) or a Hugging Face link with an
optional quantization (`https://huggingface.co/user/repo` + `Q4_K_M`). One text form names both, so
the admin needs one field and routes.yaml a string: the catalog id, or Ollama's own Hugging Face form
`hf.co/user/repo:Q4_K_M`. routes.yaml also takes the mapping `{hf: user/repo, quantization: Q4_K_M}`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

HF_LINK = "https://huggingface.co/"
_HF_PREFIXES = ("hf.co/", "huggingface.co/", HF_LINK)
_HF_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_QUANTIZATION = re.compile(r"[A-Za-z0-9][\w.-]*")
_CATALOG_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)*")
FORMS = "a catalog id such as google/gemma-3-1b, or a Hugging Face repo: hf.co/user/repo:Q4_K_M"


@dataclass(frozen=True)
class Download:
    """A model LM Studio can download: a catalog id, or a Hugging Face repo (`hf=True`) with an
    optional quantization."""

    name: str
    hf: bool = False
    quantization: str | None = None

    @property
    def text(self) -> str:
        """The one-line form (the admin's field, `manage.py routes show`, the request log)."""
        if not self.hf:
            return self.name
        return f"hf.co/{self.name}" + (f":{self.quantization}" if self.quantization else "")

    def to_yaml(self):
        """As routes.yaml writes it: a catalog id as a string, a Hugging Face repo as a mapping."""
        if not self.hf:
            return self.name
        return {"hf": self.name, **({"quantization": self.quantization} if self.quantization else {})}

    def lmstudio_body(self) -> dict:
        """The body of LM Studio's `POST /api/v1/models/download`."""
        if not self.hf:
            return {"model": self.name}
        return {"model": HF_LINK + self.name,
                **({"quantization": self.quantization} if self.quantization else {})}


def parse_download_text(text: str) -> Download:
    """`google/gemma-3-1b`, `hf.co/user/repo[:QUANT]` (or `huggingface.co/...`, or a
    `https://huggingface.co/user/repo` link) as a Download; ValueError saying what is accepted."""
    text = text.strip() if isinstance(text, str) else ""
    for prefix in _HF_PREFIXES:
        if text.lower().startswith(prefix):
            repo, _, quantization = text[len(prefix):].rstrip("/").partition(":")
            return hugging_face(repo, quantization or None)
    if not _CATALOG_ID.fullmatch(text):
        raise ValueError(f"expected {FORMS}, got {text!r}")
    return Download(text)


def hugging_face(repo, quantization=None) -> Download:
    """A Hugging Face download, checked: `user/repo`, and a quantization such as Q4_K_M (upper-cased,
    as Hugging Face file names spell them; `latest` means none, as in Ollama)."""
    if not isinstance(repo, str) or not _HF_REPO.fullmatch(repo.strip()):
        raise ValueError(f"a Hugging Face repo is 'user/repo', got {repo!r}")
    if quantization is not None and (not isinstance(quantization, str)
                                     or not _QUANTIZATION.fullmatch(quantization.strip())):
        raise ValueError(f"a quantization is a name such as Q4_K_M, got {quantization!r}")
    quantization = quantization.strip().upper() if quantization else None
    return Download(repo.strip(), hf=True, quantization=None if quantization == "LATEST" else quantization)


def parse_download(value) -> Download | None:
    """An alias's `download:` as routes.yaml or the admin gives it (None or "" for none)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return parse_download_text(value)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"hf", "quantization"})
        if unknown or "hf" not in value:
            raise ValueError(f"a mapping is {{hf: user/repo, quantization: Q4_K_M}}, got keys "
                             f"{', '.join(map(str, value)) or 'none'}")
        return hugging_face(value["hf"], value.get("quantization"))
    raise ValueError(f"expected {FORMS}, got {type(value).__name__}")


def download_field(data, fail) -> dict:
    """The alias field `download`, validated for routing.config.loader.alias_fields (`fail(message, key)`)."""
    try:
        return {"download": parse_download(data.get("download"))}
    except ValueError as exc:
        fail(f"bad 'download': {exc}", "download")


def downloaded_id(download: Download, before, after) -> str | None:
    """The LM Studio model id a finished download became, from the model ids listed before and after
    it: a catalog id is its own id; a Hugging Face repo is the one new id, else the id LM Studio
    gives such repos (`user/Qwen3-0.6B-GGUF` -> `qwen3-0.6b`, also under a publisher). None: unknown."""
    if not download.hf:
        return download.name
    before = set(before)
    new = [model for model in after if model not in before]
    if len(new) == 1:
        return new[0]
    repo = download.name.rsplit("/", 1)[-1].lower()
    for suffix in ("-gguf", "-mlx"):
        repo = repo.removesuffix(suffix)
    matches = [model for model in after if model.lower() == repo or model.lower().endswith("/" + repo)]
    return matches[0] if len(matches) == 1 else None
