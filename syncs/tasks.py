"""django-q2 entry points of the syncs. Thin: each calls a flow through the run bookkeeping."""

from syncs.flows import FLOWS
from syncs.notifications import send_team_digests
from syncs.runs import run_flow


def run(flow: str, trigger: str = "schedule") -> int:
    """Run one flow once; returns the SyncRun's id."""
    return run_flow(flow=flow, action=FLOWS[flow], trigger=trigger).pk


def send_digests() -> dict[str, str]:
    """Scheduled every 5 minutes: each team's digest whose interval has passed."""
    return send_team_digests()
