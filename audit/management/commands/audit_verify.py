"""Check every audit chain: an edited, removed, reordered or cut-off event is reported."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.chain import chains, verify_chain


class Command(BaseCommand):
    help = (
        "Recompute the hash chain of each account's audit events (and the platform's) and report every event "
        "that was edited, removed, inserted or reordered, and chains cut short. Exits 1 when any is found."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", action="append", default=[], help="an account's public id (repeatable)")
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    def handle(self, *args: Any, **options: Any) -> None:
        checked_chains, checked_events, problems = 0, 0, []
        for chain in chains(options["account"] or None):
            events, found = verify_chain(chain)
            checked_chains, checked_events = checked_chains + 1, checked_events + events
            problems.extend(found)
        if options["json"]:
            document = {
                "ok": not problems,
                "chains": checked_chains,
                "events": checked_events,
                "problems": [problem.as_dict() for problem in problems],
            }
            self.stdout.write(json.dumps(document, indent=2))
        else:
            for problem in problems:
                where = f"event {problem.sequence}" + (f" ({problem.event})" if problem.event else "")
                self.stdout.write(f"{problem.chain}: {where}: {problem.kind}: {problem.detail}")
            verdict = f"{len(problems)} problem(s) found" if problems else "no problem found"
            self.stdout.write(f"Checked {checked_events} event(s) in {checked_chains} chain(s): {verdict}.")
        if problems:
            raise SystemExit(1)
