"""`enforcer backtest`: replay a JSON-lines file through the worker's own pipeline.

Same parsing, features, Redis windows (in an isolated namespace, removed afterwards) and
policy as the worker, in event time and as fast as Redis allows. With a labels file it also
scores the policy: how many attack keys it caught, how much of their traffic it denied, how
fast, and which benign keys it touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import pickle
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from operator import attrgetter
from pathlib import Path
from typing import Any, TextIO

import orjson

from enforcer.core.decisions import ACTION_RANK, Decision
from enforcer.core.events import GatewayEvent
from enforcer.core.settings import Settings
from enforcer.core.subjects import COUNTED_KINDS, value_getter
from enforcer.engine.features.request import COUNTERS, N_BANDS
from enforcer.engine.featurize import FeaturedRows, featurize_rows, from_rows
from enforcer.engine.gc_tuning import tuned_for_event_path
from enforcer.engine.pipeline import (
    BatchResult,
    Pipeline,
    PolicyHolder,
    Prepared,
    Record,
)
from enforcer.engine.policy.model import Policy
from enforcer.engine.staged import run_staged
from enforcer.store.windows import open_store
from enforcer.tools.interpreter import interpreter


@dataclass
class BacktestReport:
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    bad_lines: Counter[str] = field(default_factory=Counter)
    decisions: list[Decision] = field(default_factory=list)
    elapsed_s: float = 0.0
    # Per api_key: requests, requests denied, first request ts, first denied ts.
    requests: Counter[str] = field(default_factory=Counter)
    denied: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)
    first_detected: dict[str, float] = field(default_factory=dict)  # event time of the decision
    blocked_keys: set[str] = field(default_factory=set)

    @property
    def events_per_s(self) -> float:
        return self.lines / self.elapsed_s if self.elapsed_s else 0.0

    def by_action_and_rule(self) -> Counter[tuple[str, str, str]]:
        return Counter((d.mode, d.rule, d.action) for d in self.decisions)


class _ActiveActions:
    """Which subjects hold a live enforce-mode action at a given event time, as a gateway
    that applied every published decision would see it."""

    def __init__(self) -> None:
        # kind -> subject value -> (action, expires_at, since); only kinds that ever held an
        # action are looked up, and by value, so most events cost one dict lookup.
        self.active: dict[str, dict[str, tuple[str, float | None, float]]] = {}
        self._lookups: tuple[
            tuple[dict[str, tuple[str, float | None, float]], Callable[[GatewayEvent], str | None]],
            ...,
        ] = ()

    def apply(self, decision: Decision) -> None:
        if decision.mode != "enforce":
            return
        kind, value = decision.subject
        held = self.active.get(kind)
        if held is None:
            held = self.active[kind] = {}
            self._lookups = tuple(
                (self.active[k], value_getter(k)) for k in COUNTED_KINDS if k in self.active
            )
        held[value] = (decision.action, decision.expires_at, decision.ts)

    def action_at(self, event: GatewayEvent) -> tuple[str, float] | None:
        """The strongest live action over the event's subjects, and since when it has held."""
        strongest: tuple[str, float] | None = None
        ts = event.ts
        for held, value_of in self._lookups:
            value = value_of(event)
            entry = held.get(value) if value is not None else None
            if entry is None:
                continue
            action, expires_at, start = entry
            live = start < ts and (expires_at is None or ts < expires_at) and action != "allow"
            if live and (strongest is None or ACTION_RANK[action] > ACTION_RANK[strongest[0]]):
                strongest = (action, start)
        return strongest


def read_records(path: Path, chunk: int) -> Iterator[list[Record]]:
    """The file's non-blank lines as records, `chunk` to a batch, numbered by line."""
    topic = str(path)
    with path.open("rb") as fh:
        batch: list[Record] = []
        for number, line in enumerate(fh, 1):
            if line.isspace():
                continue
            batch.append(Record(line.strip(), None, topic, None, number))
            if len(batch) >= chunk:
                yield batch
                batch = []
        if batch:
            yield batch


class _FeaturizingHelper:
    """A forked process that reads the events file itself and sends back each batch's parse and
    features (see enforcer.engine.featurize), running ahead of the pipeline.

    Both processes read the file with read_records, so batch N here is batch N there and only
    the featured rows cross between them: one pickled blob per batch over a pipe, which the
    helper fills ahead as far as the pipe holds. A process pool fed the lines would cost the
    pipeline's process about a tenth of its CPU (pickling 100 MB of lines and the pool's
    feeder and manager threads)."""

    def __init__(self, path: Path, chunk: int, max_bytes: int, sketches: int) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, sending = context.Pipe(duplex=False)
        _widen(sending)
        self._process = context.Process(
            target=_featurize_file,
            args=(path, chunk, max_bytes, sketches, sending),
            name="enforcer-backtest-features",
            daemon=True,
        )
        self._process.start()
        sending.close()

    def next_rows(self) -> FeaturedRows:
        """The next batch's rows, waiting for the helper if it is behind."""
        try:
            failed, payload = pickle.loads(self._conn.recv_bytes())
        except EOFError:
            raise RuntimeError(
                f"the backtest's helper process ended (exit code {self._process.exitcode})"
            ) from None
        if failed:
            raise RuntimeError(f"the backtest's helper process failed:\n{payload}")
        rows: FeaturedRows = payload
        return rows

    def close(self) -> None:
        self._conn.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()


# How far ahead the helper may write: a batch of 2,000 rows pickles to about 400 kB, and the
# default 64 kB pipe would block it on every batch until the pipeline read it. 1 MB is Linux's
# default ceiling for an unprivileged process.
_PIPE_BYTES = 1 << 20


def _widen(conn: Connection) -> None:
    # Not Linux, or above the system's pipe-max-size: the helper runs less far ahead.
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _featurize_file(path: Path, chunk: int, max_bytes: int, sketches: int, out: Connection) -> None:
    """The helper process: every batch of the file, featured, in order."""
    try:
        for records in read_records(path, chunk):
            rows = featurize_rows([r.value for r in records], max_bytes, sketches)
            out.send_bytes(pickle.dumps((False, rows), pickle.HIGHEST_PROTOCOL))
    except BrokenPipeError:
        return  # the pipeline stopped reading
    except BaseException:
        out.send_bytes(pickle.dumps((True, traceback.format_exc())))
    finally:
        out.close()


async def run_backtest(
    settings: Settings,
    policy: Policy,
    events_path: Path,
    out: TextIO | None = None,
    batch_size: int = 2000,
    helper_process: bool = True,
    progress: Callable[[int], None] | None = None,
) -> BacktestReport:
    """Replay `events_path` through the pipeline. With `helper_process`, parsing and features
    run in a second process ahead of the pipeline (see _FeaturizingHelper); the decisions are
    the same either way, since that half of a batch is pure. `progress` is told the lines
    read after each batch."""
    with tuned_for_event_path():
        return await _replay(
            settings, policy, events_path, out, batch_size, helper_process, progress
        )


async def _replay(
    settings: Settings,
    policy: Policy,
    events_path: Path,
    out: TextIO | None,
    batch_size: int,
    helper_process: bool,
    progress: Callable[[int], None] | None = None,
) -> BacktestReport:
    prefix = f"{settings.redis_prefix}-backtest-{uuid.uuid4().hex[:8]}"
    store = open_store(settings, policy.windows, COUNTERS, N_BANDS, prefix)
    pipeline = Pipeline(store, PolicyHolder(policy), settings, check_future=False)
    report = BacktestReport()
    gateway = _ActiveActions()
    chunks = read_records(events_path, batch_size)
    helper = (
        _FeaturizingHelper(
            events_path,
            batch_size,
            settings.max_event_bytes,
            pipeline.policy.compiled.plan.sketches,
        )
        if helper_process
        else None
    )

    def prepare_next() -> Prepared | None:
        records = next(chunks, None)
        if records is None:
            return None
        report.lines += len(records)
        if progress is not None:
            progress(report.lines)
        featured = from_rows(helper.next_rows()) if helper is not None else None
        return pipeline.prepare(records, featured)

    async def account(result: BatchResult) -> None:
        _account(report, gateway, result, out)

    started = time.perf_counter()
    try:
        await run_staged(pipeline, prepare_next, account)
    finally:
        report.elapsed_s = time.perf_counter() - started
        if helper is not None:
            helper.close()
        await store.drop_namespace()
        await store.close()
    return report


_EVENT_TS = attrgetter("ts")  # C-level: every replayed event is sorted by it


def _account(
    report: BacktestReport, gateway: _ActiveActions, result: BatchResult, out: TextIO | None
) -> None:
    """Replay the batch as a gateway applying every decision would have seen it."""
    report.events += result.events
    report.duplicates += result.duplicates
    report.bad_lines.update(d.reason for d in result.dead_letters)
    pending = sorted(result.decisions, key=lambda d: d.ts)
    for d in pending:
        report.decisions.append(d)
        if out is not None:
            out.write(d.to_json().decode() + "\n")
    # A decision applies to requests after the one that triggered it, never to that one.
    cursor = 0
    for event in sorted(result.parsed, key=_EVENT_TS):
        while cursor < len(pending) and pending[cursor].ts < event.ts:
            gateway.apply(pending[cursor])
            cursor += 1
        key = event.api_key
        report.requests[key] += 1
        report.first_seen.setdefault(key, event.ts)
        hit = gateway.action_at(event)
        if hit is not None:
            action, since = hit
            report.denied[key] += 1
            report.first_detected.setdefault(key, since)
            if action == "block":
                report.blocked_keys.add(key)
    for d in pending[cursor:]:
        gateway.apply(d)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def score(report: BacktestReport, labels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Figures against ground truth: recall, harvest denied, time to detect, benign harm."""
    attack_keys = [k for k, v in labels.items() if v.get("attack") and report.requests[k]]
    caught = [k for k in attack_keys if k in report.first_detected]
    attack_requests = sum(report.requests[k] for k in attack_keys)
    attack_denied = sum(report.denied[k] for k in attack_keys)
    ttd = [report.first_detected[k] - report.first_seen[k] for k in caught]
    by_population: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"keys": 0, "affected": 0, "blocked": 0, "requests": 0, "denied": 0}
    )
    ttd_of: dict[str, list[float]] = defaultdict(list)
    for key, label in labels.items():
        if not report.requests[key]:
            continue
        population = label.get("population", "unknown")
        row = by_population[population]
        row["attack"] = bool(label.get("attack"))
        row["keys"] += 1
        row["affected"] += key in report.first_detected
        row["blocked"] += key in report.blocked_keys
        row["requests"] += report.requests[key]
        row["denied"] += report.denied[key]
        if key in report.first_detected:
            ttd_of[population].append(report.first_detected[key] - report.first_seen[key])
    for population, row in by_population.items():
        # For an attack, the share of its keys caught and of its requests denied; for benign
        # traffic, the share of its keys and requests that any action touched.
        row["key_share"] = row["affected"] / row["keys"]
        row["request_share"] = row["denied"] / row["requests"] if row["requests"] else 0.0
        row["ttd_p50_s"] = _quantile(ttd_of[population], 0.5)
    benign_keys = [k for k, v in labels.items() if not v.get("attack") and report.requests[k]]
    benign_affected = sum(1 for k in benign_keys if k in report.first_detected)
    return {
        "attack_keys": len(attack_keys),
        "attack_key_recall": len(caught) / len(attack_keys) if attack_keys else None,
        "harvest_denied": attack_denied / attack_requests if attack_requests else None,
        "time_to_detect_p50_s": _quantile(ttd, 0.5),
        "time_to_detect_p90_s": _quantile(ttd, 0.9),
        "benign_keys": len(benign_keys),
        "benign_keys_affected": benign_affected,
        "benign_affected_share": benign_affected / len(benign_keys) if benign_keys else None,
        "populations": dict(by_population),
    }


def format_report(report: BacktestReport, scores: dict[str, Any] | None) -> str:
    lines = [
        f"lines read        {report.lines}",
        f"events counted    {report.events} ({report.duplicates} duplicates ignored)",
        f"bad lines         {sum(report.bad_lines.values())}"
        + (
            f" ({', '.join(f'{k}={v}' for k, v in sorted(report.bad_lines.items()))})"
            if report.bad_lines
            else ""
        ),
        f"decisions         {len(report.decisions)}",
    ]
    for (mode, rule, action), n in sorted(report.by_action_and_rule().items()):
        lines.append(f"  {mode:8} {rule:28} {action:9} {n}")
    lines.append(
        f"speed             {report.events_per_s:,.0f} events/s ({report.elapsed_s:.1f} s;"
        f" {interpreter()})"
    )
    if scores:

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        def sec(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.1f} s"

        lines += [
            f"attack-key recall {pct(scores['attack_key_recall'])} "
            f"of {scores['attack_keys']} attack keys",
            f"harvest denied    {pct(scores['harvest_denied'])}",
            f"time to detect    p50 {sec(scores['time_to_detect_p50_s'])}, "
            f"p90 {sec(scores['time_to_detect_p90_s'])}",
            f"benign affected   {scores['benign_keys_affected']} of {scores['benign_keys']} keys "
            f"({pct(scores['benign_affected_share'])})",
            "by population     keys  affected  blocked  key share  requests denied  ttd p50",
        ]
        for population, row in sorted(
            scores["populations"].items(), key=lambda item: (item[1].get("attack", False), item[0])
        ):
            ttd = "-" if row["ttd_p50_s"] is None else f"{row['ttd_p50_s']:.0f} s"
            kind = "attack" if row.get("attack") else "benign"
            lines.append(
                f"  {population:16}{row['keys']:5} {row['affected']:9} {row['blocked']:8}"
                f"  {row['key_share']:9.3f}  {row['request_share']:15.3f}  {ttd:>7}  {kind}"
            )
    return "\n".join(lines)


def load_labels(path: Path) -> dict[str, dict[str, Any]]:
    doc = orjson.loads(path.read_bytes())
    return doc.get("keys", doc) if isinstance(doc, dict) else {}
