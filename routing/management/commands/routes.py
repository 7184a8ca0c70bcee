"""`manage.py routes show | export | import FILE`: the effective route table from the command line."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from routing.models import Alias
from routing.registry import get_registry, source_of
from routing.routes import RouteTable, RouteTableError, load_routes



class Command(BaseCommand):
    help = "Show, export or import the route table (routes.yaml merged with the admin's aliases)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("show", help="the effective aliases and where each comes from")
        export = sub.add_parser("export", help="the effective table as routes.yaml text")
        export.add_argument("--output", "-o", help="write to this file instead of standard output")
        imported = sub.add_parser("import", help="store a routes.yaml file's aliases in the admin")
        imported.add_argument("file", help="a routes.yaml file; it is validated as a whole first")
        imported.add_argument("--replace", action="store_true",
                              help="also delete admin aliases the file does not name")

    def handle(self, *args, action, **options):
        registry = get_registry()
        if registry.error:
            self.stderr.write(f"warning: {registry.error} (the last good table is used)")
        getattr(self, f"handle_{action}")(registry, **options)

    def handle_show(self, registry, **options):
        table = registry.current_table()
        file_table = registry.file_table()
        rows = [(a.name, a.model, source_of(a, file_table)) for a in table.aliases.values()]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("ALIAS", "MODEL"))]
        self.stdout.write(f"{'ALIAS':<{widths[0]}}  {'MODEL':<{widths[1]}}  SOURCE")
        for name, model, source in rows:
            self.stdout.write(f"{name:<{widths[0]}}  {model:<{widths[1]}}  {source}")
        defaults = table.defaults
        self.stdout.write(f"\n{len(rows)} aliases; pass-through of other names "
                          f"{'on' if defaults.passthrough else 'off'}; fallback "
                          f"{defaults.fallback or 'off'}; model lists show {defaults.expose}; "
                          f"{len(table.endpoints)} declared endpoints")

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
        created, updated, deleted = import_aliases(table, replace)
        self.stdout.write(f"imported {len(table.aliases)} aliases from {file}: {created} created, "
                          f"{updated} updated, {deleted} deleted")
        if table.defaults != RouteTable().defaults:
            self.stderr.write("note: 'defaults' are not imported (they live in routes.yaml only)")


def import_aliases(table: RouteTable, replace: bool = False) -> tuple[int, int, int]:
    """Store the table's aliases in the admin, all or none; returns (created, updated, deleted)."""
    created = updated = deleted = 0
    with transaction.atomic():
        for alias in table.aliases.values():
            stored = Alias.objects.filter(name=alias.name).first()
            created, updated = (created + 1, updated) if stored is None else (created, updated + 1)
            stored = stored or Alias(name=alias.name, description="imported")
            stored.copy_settings(alias)
            try:
                stored.full_clean()
            except ValidationError as exc:
                raise CommandError(f"alias '{alias.name}': {exc.messages[0]}") from None
            stored.save()
        if replace:
            deleted, _ = Alias.objects.exclude(name__in=list(table.aliases)).delete()
    return created, updated, deleted
