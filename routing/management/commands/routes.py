"""`manage.py routes show | export | import FILE | pull NAME`: the effective route table from the command
line, and `ollama pull`'s download with a terminal progress bar."""
from __future__ import annotations

import asyncio

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from routing.config.loader import RouteTableError, load_routes
from routing.config.registry import defaults_sources, endpoint_source, source_of
from routing.config.table import Defaults, RouteTable
from routing.core.errors import ProxyError
from routing.models import Alias, DeclaredEndpoint, RouteDefaults
from routing.proxy.pull import pull_in_terminal
from routing.proxy.state import current


class Command(BaseCommand):
    help = "Show, export or import the route table (routes.yaml merged with the admin's store)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("show", help="the effective aliases, defaults and endpoints, with their sources")
        export = sub.add_parser("export", help="the effective table as routes.yaml text")
        export.add_argument("--output", "-o", help="write to this file instead of standard output")
        imported = sub.add_parser("import", help="store a routes.yaml file's aliases, defaults and "
                                                 "endpoints in the admin")
        imported.add_argument("file", help="a routes.yaml file; it is validated as a whole first")
        imported.add_argument("--replace", action="store_true",
                              help="also delete admin aliases and endpoints the file does not name, "
                                   "and clear the admin defaults it does not set")
        pull = sub.add_parser("pull", help="download a model into LM Studio as `ollama pull NAME` through "
                                           "the proxy does, with a progress bar")
        pull.add_argument("name", help="an alias, an LM Studio catalog id, or hf.co/user/repo:QUANTIZATION")

    def handle(self, *args, action, **options):
        registry = current().registry
        if registry.error:
            self.stderr.write(f"warning: {registry.error} (the last good table is used)")
        getattr(self, f"handle_{action}")(registry, **options)

    def handle_show(self, registry, **options):
        table = registry.current_table()
        file_table = registry.file_table()
        self.write_columns(("ALIAS", "MODEL", "SOURCE", "DOWNLOAD"), [
            (a.name + (" (pattern)" if a.is_pattern else "") + (" (hidden)" if a.hidden else ""),
             a.model, source_of(a, file_table), a.download.text if a.download else "")
            for a in table.aliases.values()])
        sources = defaults_sources(RouteDefaults.load().overrides())
        self.stdout.write("")
        self.write_columns(("DEFAULT", "VALUE", "SOURCE"), [
            (name, "off" if getattr(table.defaults, name) is None else str(getattr(table.defaults, name)),
             source) for name, source in sources.items()])
        self.stdout.write("")
        self.write_columns(("ENDPOINT", "STATUS", "SOURCE"), [
            (f"{e.method} {e.path}", str(e.status), endpoint_source(e, file_table)) for e in table.endpoints])
        self.stdout.write(f"\n{len(table.aliases)} aliases, {len(table.endpoints)} declared endpoints")

    def handle_pull(self, registry, name, **options):
        try:
            asyncio.run(pull_in_terminal(name, self.stdout, getattr(self.stdout, "_out", self.stdout)))
        except ProxyError as exc:
            raise CommandError(exc.message) from None

    def write_columns(self, headings: tuple[str, ...], rows: list[tuple[str, ...]]):
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headings)]
        for row in [headings, *rows]:
            self.stdout.write("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)).rstrip())

    def handle_export(self, registry, output=None, **options):
        text = registry.export_yaml()
        if output:
            with open(output, "w", encoding="utf-8") as stream:
                stream.write(text)
            self.stdout.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")

    def handle_import(self, registry, file, replace=False, **options):
        try:
            with open(file, encoding="utf-8") as stream:
                table = load_routes(stream, source=file)
        except OSError as exc:
            raise CommandError(f"{file}: cannot read: {exc}") from None
        except RouteTableError as exc:
            raise CommandError(str(exc)) from None
        with transaction.atomic():
            created, updated, deleted = import_aliases(table, replace)
            endpoints = import_endpoints(table, replace)
            defaults = import_defaults(table, replace)
        self.stdout.write(f"imported {len(table.aliases)} aliases from {file}: {created} created, "
                          f"{updated} updated, {deleted} deleted; {endpoints} endpoints; defaults "
                          f"{', '.join(defaults) or 'unchanged'}")


def import_aliases(table: RouteTable, replace: bool = False) -> tuple[int, int, int]:
    """Store the table's aliases in the admin, all or none; returns (created, updated, deleted)."""
    created = updated = deleted = 0
    with transaction.atomic():
        for alias in table.aliases.values():
            stored = Alias.objects.filter(name=alias.name).first()
            created, updated = (created + 1, updated) if stored is None else (created, updated + 1)
            stored = stored or Alias(name=alias.name, description="imported")
            stored.copy_settings(alias)
            _full_clean(stored, f"alias '{alias.name}'")
            stored.save()
        if replace:
            deleted, _ = Alias.objects.exclude(name__in=list(table.aliases)).delete()
    return created, updated, deleted


def _full_clean(row, what: str):
    try:
        row.full_clean()
    except ValidationError as exc:
        raise CommandError(f"{what}: {exc.messages[0]}") from None


def import_endpoints(table: RouteTable, replace: bool = False) -> int:
    """Store the table's declared endpoints in the admin (same method and path: updated)."""
    for endpoint in table.endpoints:
        stored = (DeclaredEndpoint.objects.filter(method=endpoint.method, path=endpoint.path).first()
                  or DeclaredEndpoint(method=endpoint.method, path=endpoint.path, description="imported"))
        stored.status, stored.body, stored.enabled = endpoint.status, endpoint.body, True
        _full_clean(stored, f"endpoint {endpoint.method} {endpoint.path}")
        stored.save()
    if replace:
        kept = {e.key for e in table.endpoints}
        for stored in DeclaredEndpoint.objects.all():
            if (stored.method, stored.path) not in kept:
                stored.delete()
    return len(table.endpoints)


def import_defaults(table: RouteTable, replace: bool = False) -> list[str]:
    """Store the defaults the file sets (those not at their built-in value) as the admin's override;
    with `replace`, the others are cleared (back to routes.yaml's). Returns the names stored."""
    stored = RouteDefaults.load()
    built_in = Defaults()
    changed = [name for name in ("fallback", "expose", "passthrough", "ttl")
               if getattr(table.defaults, name) != getattr(built_in, name)]
    for name in ("fallback", "expose", "passthrough", "ttl"):
        if name in changed:
            setattr(stored, name, getattr(table.defaults, name))
        elif replace:
            setattr(stored, name, "" if name in ("fallback", "expose") else None)
    if changed or replace:
        _full_clean(stored, "defaults")
        stored.save()
    return changed
