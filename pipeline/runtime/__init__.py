"""The running graph, on asyncio + Rx:

    sources ─► Feed (version + spool, one txn) ─► validate ─► batch ─► circuit_gate ─► retry(deliver) ─► settle
       ▲                                                             │ refused              │ gave up
       └── replay: the spool's backlog, oldest first ◄── spill ◄─────┴──────────────────────┘

Everything a source reads is in the spool before it enters the graph, and leaves it only when
the sink acknowledged it (or it was dead-lettered): a SIGTERM or a crash at any point loses
nothing. When an event cannot be delivered now (circuit open, retries exhausted, graph full,
shutdown) it simply stays in the spool ("spilled"), and the pipeline switches to *backlog
mode*: new events are only spooled, and the replay source feeds the spool to the graph in
order, oldest first, once the circuit lets traffic through. When replay catches up, live
events flow straight in again. Sources are never blocked by delivery (only by the ``block``
overflow policy, by choice; and a replay by a full spool: an archive's events never make the
shared spool drop an entry, whatever the policy).

Memory is bounded by credits (events in the graph); concurrency of deliveries by
``max_concurrency`` delivery workers (``graph.Deliveries``). Only the holder of the drain lease replays the backlog.

One job a module: ``feed`` (the sources' durable entry), ``flow`` (where each event is, credits,
backlog mode), ``graph`` (the Rx chain and a delivery attempt), ``settlement`` (the ledger of
results: ack, dead letter, spill), ``backlog`` (replay of the spool), ``counters`` (cross-process
counters to the store), ``background`` (the store thread), ``pipeline`` (the composition and a run).
"""

from pattern_tracker.runtime.feed import ROOM_POLL, Feed, Source
from pattern_tracker.runtime.pipeline import Pipeline
from pattern_tracker.runtime.settings import RuntimeSettings

__all__ = ["ROOM_POLL", "Feed", "Pipeline", "RuntimeSettings", "Source"]
