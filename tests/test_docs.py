"""The documentation stays true: every setting the code reads is documented with the code's default,
every relative link in README.md and docs/ resolves (anchors included), and the README stays a front
door. Pure file reading: no database, no Django set-up."""
from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SETTINGS_DOC = DOCS / "settings.md"
SETTINGS_PY = ROOT / "shimsite" / "settings.py"
README_MAX_LINES = 200

ENV_READERS = {"bool", "float", "int", "list", "str", "db", "db_url", "json", "url", "path", "dict", "tuple"}
NO_DEFAULT = object()  # the call has no default=
NOT_LITERAL = object()  # the default is computed (an expression over other values)
ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}


# --- settings.py: what the code reads ------------------------------------------------------------

@dataclass(frozen=True)
class EnvSetting:
    name: str
    default: object  # a Python value, NO_DEFAULT or NOT_LITERAL
    source: str  # the default as written in settings.py ("" when there is none)
    line: int


def literal_value(node: ast.expr):
    """The value of a constant default: a literal, a list of literals, or arithmetic on numbers
    (`64 * 1024`); NOT_LITERAL for anything that depends on other values."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [literal_value(item) for item in node.elts]
        return NOT_LITERAL if NOT_LITERAL in items else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = literal_value(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        left, right = literal_value(node.left), literal_value(node.right)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            return ARITHMETIC[type(node.op)](left, right)
    return NOT_LITERAL


def is_env_call(node: ast.AST) -> bool:
    """`env("NAME", ...)` or `env.<type>("NAME", ...)` with the name as a string constant."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    reader = (isinstance(func, ast.Name) and func.id == "env") or (
        isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env"
        and func.attr in ENV_READERS)
    first = node.args[0]
    return reader and isinstance(first, ast.Constant) and isinstance(first.value, str)


def env_settings(source: str) -> list[EnvSetting]:
    """Every environment setting a settings module reads through django-environ, in source order."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not is_env_call(node):
            continue
        default_node = next((kw.value for kw in node.keywords if kw.arg == "default"), None)
        if default_node is None and len(node.args) > 2:  # env("NAME", cast, default)
            default_node = node.args[2]
        if default_node is None:
            default, written = NO_DEFAULT, ""
        else:
            default, written = literal_value(default_node), ast.get_source_segment(source, default_node) or ""
        found.append(EnvSetting(node.args[0].value, default, written, node.lineno))
    return sorted(found, key=lambda setting: setting.line)


# --- docs/settings.md: what the documentation says -----------------------------------------------

CODE_SPAN = re.compile(r"`([^`]*)`")


def split_row(line: str) -> list[str]:
    """The cells of a markdown table row (escaped `\\|` stays inside its cell)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def is_separator_row(line: str) -> bool:
    cells = split_row(line)
    return bool(cells) and all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells)


def documented_defaults(text: str, name: str) -> list[str]:
    """Where `name` is documented, the text that states its default: the `Default` cell of each
    table row whose first cell is the name; failing that, what follows the name on each line that
    mentions it in backticks."""
    lines = text.splitlines()
    header: list[str] | None = None
    cells_found: list[str] = []
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            header = None
            continue
        if index + 1 < len(lines) and is_separator_row(lines[index + 1]):
            header = [cell.lower() for cell in split_row(line)]
            continue
        if is_separator_row(line):
            continue
        cells = split_row(line)
        if header and cells and cells[0] == f"`{name}`" and "default" in header:
            column = header.index("default")
            cells_found.append(cells[column] if column < len(cells) else "")
    if cells_found:
        return cells_found
    marker = f"`{name}`"
    return [line.split(marker, 1)[1] for line in lines if marker in line]


def _number(text: str):
    try:
        return float(text.replace("_", "").replace(",", ""))
    except ValueError:
        return None


def default_matches(documented: str, setting: EnvSetting) -> bool:
    """Whether a documented default (a table cell, or the rest of a line) states the code's literal
    default. The default is the cell's first code span (`...`), or its first word when it has none."""
    value = setting.default
    spans = CODE_SPAN.findall(documented)
    words = documented.split()
    stated = spans[0] if spans else (words[0].strip(".,;:()") if words else "")
    empty_word = re.match(r"\s*empty\b", documented, re.IGNORECASE) is not None
    if isinstance(value, bool):
        return stated.lower() == ("true" if value else "false")
    if isinstance(value, (int, float)):
        return stated == setting.source or _number(stated) == value
    if isinstance(value, str):
        if value == "":
            return stated in ('""', "''") or empty_word
        return stated == value
    if isinstance(value, list):
        if not value:
            return stated in ("[]", '""', "''") or empty_word
        return [item.strip() for item in stated.split(",")] == [str(item) for item in value]
    raise AssertionError(f"no rule for a default of type {type(value).__name__}: {value!r}")


def settings_read_by_the_code() -> list[EnvSetting]:
    return env_settings(SETTINGS_PY.read_text(encoding="utf-8"))


def test_it_finds_the_settings_that_settings_py_reads():
    names = {setting.name for setting in settings_read_by_the_code()}
    # a parse that silently found nothing would make the tests below pass for nothing
    assert {"LMSTUDIO_URL", "DATABASE_URL", "DEBUG", "MAX_CLIENT_REQUESTS", "LOG_BODY_MAX_BYTES"} <= names
    assert len(names) >= 30


@pytest.mark.parametrize("setting", settings_read_by_the_code(), ids=lambda setting: setting.name)
def test_every_setting_the_code_reads_is_documented_with_its_default(setting):
    text = SETTINGS_DOC.read_text(encoding="utf-8")
    assert f"`{setting.name}`" in text, (
        f"{setting.name} (shimsite/settings.py:{setting.line}) is not documented in docs/settings.md")
    if setting.default is NO_DEFAULT or setting.default is NOT_LITERAL:
        return
    documented = documented_defaults(text, setting.name)
    assert documented and all(default_matches(cell, setting) for cell in documented), (
        f"docs/settings.md gives {setting.name} the default {documented!r}; "
        f"shimsite/settings.py:{setting.line} says default={setting.source}")


SAMPLE_SETTINGS = '''
env = environ.Env()
A = env("OLLAMA_VERSION", default="0.14.0")
B = env.float("UPSTREAM_READ_TIMEOUT", default=300.0)
C = env.bool("REQUEST_LOG", default=True)
D = env.list("ALLOWED_HOSTS", default=[])
E = env.int("LOG_BODY_MAX_BYTES", default=64 * 1024)
F = env.int("MAX_CLIENT_REQUESTS", default=max(1, B // 4))
G = env("API_KEY", default="")
H = Path(env("ROUTES_FILE", default=str(BASE_DIR / "routes.yaml")))
I = other("NOT_A_SETTING", default=1)
'''


def test_it_reads_literal_and_computed_defaults_from_settings_source():
    found = {setting.name: setting.default for setting in env_settings(SAMPLE_SETTINGS)}
    assert found == {"OLLAMA_VERSION": "0.14.0", "UPSTREAM_READ_TIMEOUT": 300.0, "REQUEST_LOG": True,
                     "ALLOWED_HOSTS": [], "LOG_BODY_MAX_BYTES": 65536, "MAX_CLIENT_REQUESTS": NOT_LITERAL,
                     "API_KEY": "", "ROUTES_FILE": NOT_LITERAL}


@pytest.mark.parametrize(("documented", "default", "source", "matches"), [
    ("`0.14.0`", "0.14.0", '"0.14.0"', True),
    ("`0.12.3`", "0.14.0", '"0.14.0"', False),
    ("`300`", 300.0, "300.0", True),
    ("`300.0`", 300.0, "300.0", True),
    ("`30`", 300.0, "300.0", False),
    ("`65536` (`64 * 1024`)", 65536, "64 * 1024", True),
    ("`1024`", 65536, "64 * 1024", False),
    ("`true`", True, "True", True),
    ("`False`", False, "False", True),
    ("`false`", True, "True", False),
    ('empty (`""`)', "", '""', True),
    ("empty", "", '""', True),
    ("`x`", "", '""', False),
    ("empty (`[]`)", [], "[]", True),
    ("`a.example, b.example`", ["a.example", "b.example"], "", True),
])
def test_a_documented_default_must_state_the_codes_value(documented, default, source, matches):
    setting = EnvSetting("NAME", default, source, 1)
    assert default_matches(documented, setting) is matches


def test_it_takes_the_default_from_the_default_column_of_the_settings_row():
    text = ("| Name | Type | Default | Meaning |\n| --- | --- | --- | --- |\n"
            "| `OTHER` | int | `5` | not this one |\n| `NAME` | float | `10.0` | waits `5` seconds |\n")
    assert documented_defaults(text, "NAME") == ["`10.0`"]
    assert not default_matches(documented_defaults(text, "NAME")[0], EnvSetting("NAME", 5.0, "5.0", 1))


# --- links ---------------------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!\!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+).+?\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower-case, punctuation except `-` and `_`
    removed, each space a `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, numbered as GitHub numbers repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        found.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return found


def relative_links(path: Path):
    """(line number, target) of every link in a markdown file that is not to another site."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if re.match(r"^(https?:|mailto:)", target, re.IGNORECASE):
                continue
            yield number, target


def markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_link(page: Path, target: str) -> str | None:
    """Why a relative link does not resolve, or None."""
    file_part, _, anchor = target.partition("#")
    destination = (page.parent / file_part).resolve() if file_part else page
    if not destination.exists():
        return f"{file_part} does not exist"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{display(destination)} has no heading with the anchor #{anchor}"
    return None


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading(page):
    problems = [f"{display(page)}:{number}: ({target}) {reason}"
                for number, target in relative_links(page)
                if (reason := broken_link(page, target)) is not None]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("heading", "slug"), [
    ("routes.yaml", "routesyaml"),
    ("How the model is loaded", "how-the-model-is-loaded"),
    ("Several LM Studio hosts (`backends:`)", "several-lm-studio-hosts-backends"),
    ("Health, readiness & metrics", "health-readiness--metrics"),
    ("The `FAST_PATH` switch", "the-fast_path-switch"),
    ("Pulling models: `ollama pull`", "pulling-models-ollama-pull"),
])
def test_it_slugs_headings_as_github_does(heading, slug):
    assert github_slug(heading) == slug


def test_a_link_to_a_missing_heading_or_file_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section\n\n[ok](#a-section) [bad](#nowhere) [gone](other.md)\n"
                    "`[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\n", encoding="utf-8")
    verdicts = {target: broken_link(page, target) for _, target in relative_links(page)}
    assert verdicts["#a-section"] is None
    assert "no heading" in verdicts["#nowhere"]
    assert "does not exist" in verdicts["other.md"]
    assert "nowhere.md" not in verdicts


# --- the README as a front door ------------------------------------------------------------------

def test_the_readme_is_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference to docs/"


def test_the_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for _, target in relative_links(README) if target.partition("#")[0]}
    missing = [page.name for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not missing, f"README.md's Documentation list lacks {missing}"


def test_the_readme_gives_the_test_command_ci_runs():
    command = "./serve --setup-only && npm ci --prefix tests/agents --no-audit --no-fund && .venv/bin/python -m pytest"
    assert command in README.read_text(encoding="utf-8").splitlines()
    ci = ROOT / ".ci" / "run"
    if ci.exists():
        assert command in ci.read_text(encoding="utf-8").splitlines()
