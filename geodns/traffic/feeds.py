"""The load monitor: poll every ``[loads.NAME]`` feed and publish a :class:`LoadSnapshot`.

Runs on the server's event loop, one task per feed, like the health monitor: a hanging
endpoint costs its own ``timeout`` and delays nothing else.

- ``file``: the file is stat()ed every ``interval`` and re-read when it changed
  (device, inode, size, mtime).  Its values are as old as the payload's time, else the file's
  mtime, so a file whose writer died goes stale.
- ``http``: GET ``url`` every ``interval``; a JSON document as for files.  Values are
  as old as the payload's time, else the moment they were fetched.
- ``prometheus``: GET ``url/api/v1/query?query=EXPR`` every ``interval``; one sample
  per value of ``label``, as old as Prometheus's sample time.

A failed poll (unreachable, HTTP error, bad payload) changes nothing: the last good
values stay until they are older than ``max_age``, then they are marked stale and
ignored by :meth:`LoadSnapshot.load`.  Never fatal.  Each feed's state changes
(ok, failing with a reason, stale, POPs missing from the payload) are logged once per
change on logger ``geodns.loads``, and counted in metrics (:class:`LoadMetrics`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from geodns.config import Config, LoadFeed
from geodns.traffic.feed_parse import (
    FeedData,
    FeedError,
    parse_csv_loads,
    parse_json_loads,
    parse_prometheus,
)
from geodns.traffic.loads import LoadSample, LoadSnapshot
from geodns.watch import WatchedFile

__all__ = ["BODY_LIMIT", "LoadMetrics", "LoadMonitor", "feed_source", "fetch_feed"]

log = logging.getLogger("geodns.loads")

BODY_LIMIT: Final = 1024 * 1024  # a load document larger than 1 MiB is a mistake
_USER_AGENT: Final = "geodns-loads/1"
OnChange = Callable[[LoadSnapshot], None]
Clock = Callable[[], float]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prometheus_url(feed: LoadFeed) -> str:
    return (feed.url or "").rstrip("/") + "/api/v1/query"


def feed_source(feed: LoadFeed) -> str:
    """How problems name the feed's origin."""
    if feed.type == "file":
        return str(feed.path)
    if feed.type == "prometheus":
        return _prometheus_url(feed)
    return feed.url or "-"


async def _get(session: aiohttp.ClientSession, feed: LoadFeed, url: str,
               params: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=feed.timeout)
    try:
        async with session.get(url, params=params, timeout=timeout,
                               allow_redirects=False) as resp:
            body = await resp.content.read(BODY_LIMIT + 1)
            if len(body) > BODY_LIMIT:
                raise FeedError([f"{url}:0: response larger than {BODY_LIMIT} bytes"])
            return resp.status, body
    except TimeoutError:
        raise FeedError([f"{url}:0: timeout after {feed.timeout:g}s"]) from None
    except aiohttp.ClientError as exc:
        raise FeedError([f"{url}:0: {type(exc).__name__}: {exc}"]) from None


def _text(body: bytes, source: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise FeedError([f"{source}:{line}: not valid UTF-8"]) from None


async def fetch_feed(feed: LoadFeed, session: aiohttp.ClientSession | None,
                     now: float) -> tuple[FeedData, float]:
    """Poll ``feed`` once: its data and the time to use for values without their own.

    Raises :class:`FeedError` (every problem located) on any failure.
    """
    if feed.type == "file":
        path = Path(feed.path or "")
        try:
            mtime = path.stat().st_mtime
            raw = path.read_bytes()
        except FileNotFoundError:
            raise FeedError([f"{path}:0: no such file"]) from None
        except OSError as exc:
            raise FeedError([f"{path}:0: cannot read: {exc.strerror or exc}"]) from None
        text = _text(raw, str(path))
        parse = parse_csv_loads if feed.format == "csv" else parse_json_loads
        return parse(text, str(path)), mtime
    assert session is not None
    if feed.type == "http":
        url = feed.url or ""
        status, body = await _get(session, feed, url)
        if status != 200:
            raise FeedError([f"{url}:0: HTTP {status}"])
        return parse_json_loads(_text(body, url), url), now
    url = _prometheus_url(feed)
    status, body = await _get(session, feed, url, {"query": feed.query or ""})
    try:
        doc = json.loads(_text(body, url))
    except json.JSONDecodeError:
        raise FeedError([f"{url}:0: HTTP {status}, not a Prometheus API response"]) from None
    return parse_prometheus(doc, feed.label, url), now


@dataclass(eq=False, slots=True)
class _FeedState:
    """One feed's last good data and everything /status and the metrics report."""

    feed: LoadFeed
    data: FeedData | None = None
    default_time: float = 0.0  # time for values without their own (mtime / fetch time)
    file: WatchedFile | None = field(default=None, init=False)  # file feeds: last read
    task: asyncio.Task[None] | None = None
    ok: bool | None = None  # last poll; None before the first
    problems: tuple[str, ...] = ()
    stale: bool = True  # no data, or the newest value is older than max_age
    missing: frozenset[str] = frozenset()  # POP keys the payload lacks
    polls: int = 0
    failures: int = 0
    stale_events: int = 0
    last_success: float | None = None
    last_poll: float | None = None

    def __post_init__(self) -> None:
        if self.feed.type == "file":  # re-read only when it changed (geodns.watch)
            self.file = WatchedFile(self.feed.path or "")

    def newest(self) -> float | None:
        if self.data is None:
            return None
        times = [self.data.time_of(k, self.default_time) for k in self.data.values]
        return max(times) if times else None


def _feed_pops(config: Config) -> dict[str, list[tuple[str, str]]]:
    """feed name -> [(POP, key in the feed)]."""
    out: dict[str, list[tuple[str, str]]] = {name: [] for name in config.loads}
    for pop in config.pops.values():
        if pop.load is not None and pop.load in out:
            out[pop.load].append((pop.name, pop.feed_key))
    return out


class LoadMonitor:
    """Polls every configured load feed and publishes the resulting :class:`LoadSnapshot`.

    ``on_change(snapshot)`` is called by :meth:`start` and then whenever a value, a
    timestamp or a stale flag changes; ``monitor.snapshot`` is always the latest.
    ``clock`` (Unix seconds) is injectable for tests.
    """

    def __init__(self, config: Config, on_change: OnChange | None = None, *,
                 clock: Clock = time.time) -> None:
        self.config = config
        self.on_change = on_change
        self.clock = clock
        self.snapshot = LoadSnapshot.empty()
        self._feeds: dict[str, _FeedState] = {n: _FeedState(f) for n, f in config.loads.items()}
        self._pops = _feed_pops(config)
        self._session: aiohttp.ClientSession | None = None
        self._running = False

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start every feed (the first poll runs at once) and publish."""
        if self._running:
            return
        self._running = True
        if any(s.feed.type != "file" for s in self._feeds.values()):
            self._session = self._make_session()
        for state in self._feeds.values():
            self._launch(state)
        if self._feeds:
            log.info("loads: polling %d feed%s", len(self._feeds),
                     "" if len(self._feeds) == 1 else "s")
        self._publish(force_notify=True)

    async def stop(self) -> None:
        """Cancel every feed task and close the HTTP client."""
        self._running = False
        tasks = [s.task for s in self._feeds.values() if s.task is not None]
        for state in self._feeds.values():
            state.task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def update_config(self, config: Config) -> None:
        """Config reload: unchanged feeds keep their data and schedule; changed ones
        restart (keeping their last data until the first new poll); removed ones stop."""
        old = self._feeds
        new: dict[str, _FeedState] = {}
        for name, feed in config.loads.items():
            prev = old.get(name)
            if prev is not None and prev.feed == feed:
                new[name] = prev
                continue
            state = _FeedState(feed)
            if prev is not None:
                self._cancel(prev)
                state.data, state.default_time = prev.data, prev.default_time
            new[name] = state
        for name, prev in old.items():
            if name not in new:
                self._cancel(prev)
        self.config = config
        self._feeds = new
        self._pops = _feed_pops(config)
        if self._running:
            if self._session is None and any(s.feed.type != "file" for s in new.values()):
                self._session = self._make_session()
            for state in new.values():
                self._launch(state)
        self._publish()

    @staticmethod
    def _make_session() -> aiohttp.ClientSession:
        # proxies from the environment are ignored: feeds are reached directly
        return aiohttp.ClientSession(trust_env=False, headers={"User-Agent": _USER_AGENT})

    def _cancel(self, state: _FeedState) -> None:
        task, state.task = state.task, None
        if task is not None:
            task.cancel()

    def _launch(self, state: _FeedState) -> None:
        if state.task is None:
            state.task = asyncio.get_running_loop().create_task(
                self._run(state), name=f"geodns-loads-{state.feed.name}")

    # --- polling ------------------------------------------------------------------

    async def _run(self, state: _FeedState) -> None:
        """Poll now, then every interval, measured from each start."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.poll(state.feed.name)
            if state.task is not asyncio.current_task():
                return  # replaced by a config reload while polling
            await asyncio.sleep(max(0.0, started + state.feed.interval - loop.time()))

    async def poll(self, name: str) -> None:
        """Poll one feed once, record the result and publish what changed."""
        state = self._feeds[name]
        feed = state.feed
        if feed.type != "file" and self._session is None:
            self._session = self._make_session()
        now = self.clock()
        state.last_poll = now
        state.polls += 1
        try:
            if feed.type == "file" and not self._file_changed(state):
                ok_result = None  # unchanged: nothing to read
            else:
                ok_result = await fetch_feed(feed, self._session, now)
        except FeedError as exc:
            self._failed(state, tuple(exc.problems))
        except Exception as exc:  # never let one feed's surprise stop the task
            self._failed(state, (f"{feed_source(feed)}:0: {type(exc).__name__}: {exc}",))
        else:
            if ok_result is not None:
                state.data, state.default_time = ok_result
            if state.ok is False:
                log.info("load feed %s recovered", name)
            elif state.ok is None and state.data is not None:
                log.info("load feed %s: first poll: %d values", name, len(state.data.values))
            state.ok, state.problems = True, ()
            state.last_success = now
        self._publish()

    def _file_changed(self, state: _FeedState) -> bool:
        """File feeds re-read only when the file changed (or after a failure)."""
        assert state.file is not None  # a file feed's state watches its file
        try:
            st = state.file.stat()
        except OSError:
            state.file.forget()
            return True  # let the read report it
        return state.file.take(st) or state.ok is not True

    def _failed(self, state: _FeedState, problems: tuple[str, ...]) -> None:
        state.failures += 1
        if state.file is not None:
            state.file.forget()  # retry the read at the next tick
        if problems != state.problems or state.ok is not False:
            keep = ("; keeping the last values until they are older than max_age "
                    f"{state.feed.max_age:g}s" if state.data is not None and not state.stale
                    else "")
            log.warning("load feed %s failed: %s%s", state.feed.name, "; ".join(problems),
                        keep)
        state.ok, state.problems = False, problems

    # --- publishing ---------------------------------------------------------------

    def _samples(self, now: float) -> dict[str, LoadSample]:
        samples: dict[str, LoadSample] = {}
        for name, state in self._feeds.items():
            feed = state.feed
            newest = state.newest()
            stale = newest is None or now - newest > feed.max_age
            if stale != state.stale:
                if stale and newest is not None:
                    state.stale_events += 1
                    log.warning("load feed %s is stale: its newest value (%s) is older than "
                                "max_age %gs; its loads are ignored", name, _iso(newest),
                                feed.max_age)
                elif not stale and state.stale_events:
                    log.info("load feed %s is fresh again", name)
                state.stale = stale
            data = state.data
            if data is None:
                continue
            missing = frozenset(key for _, key in self._pops.get(name, ())
                                if key not in data.values)
            if missing != state.missing:
                if missing:
                    log.warning("load feed %s has no value for %s", name,
                                ", ".join(sorted(missing)))
                state.missing = missing
            for pop, key in self._pops.get(name, ()):
                if key not in data.values:
                    continue
                ts = data.time_of(key, state.default_time)
                samples[pop] = LoadSample(pop, data.values[key], name, ts,
                                          now - ts > feed.max_age,
                                          self.config.pops[pop].capacity)
        return samples

    def _publish(self, force_notify: bool = False) -> None:
        now = self.clock()
        snap = LoadSnapshot(self.snapshot.generation + 1, self._samples(now), now)
        if not force_notify and snap.same_content(self.snapshot):
            return
        self.snapshot = snap
        if self.on_change is not None:
            try:
                self.on_change(snap)
            except Exception:
                log.exception("loads: on_change callback failed")

    def refresh(self) -> None:
        """Re-evaluate staleness now (the feed tasks do it at every poll)."""
        self._publish()

    # --- status -------------------------------------------------------------------

    def feed_pops(self, name: str) -> list[str]:
        """The POPs whose loads feed ``name`` carries (config order)."""
        return [pop for pop, _ in self._pops.get(name, ())]

    def feeds(self) -> Iterator[tuple[str, _FeedState]]:
        """Feed states (read-only), for :class:`LoadMetrics` and /status."""
        return iter(sorted(self._feeds.items()))

    def metrics(self) -> LoadMetrics:
        """A Prometheus collector over this monitor (register it on a registry)."""
        return LoadMetrics(self)


class LoadMetrics(Collector):
    """``geodns_load_*`` and ``geodns_pop_load``/``_capacity`` families, built at scrape."""

    def __init__(self, monitor: LoadMonitor, clock: Clock | None = None) -> None:
        self.monitor = monitor
        self.clock = clock or monitor.clock

    def collect(self) -> Iterable[Any]:
        m = self.monitor
        now = self.clock()
        up = GaugeMetricFamily("geodns_load_feed_up",
                               "1 when the feed's last poll succeeded", labels=["feed"])
        stale = GaugeMetricFamily("geodns_load_feed_stale",
                                  "1 when the feed's data is missing or older than max_age "
                                  "(its loads are ignored)", labels=["feed"])
        age = GaugeMetricFamily("geodns_load_feed_age_seconds",
                                "age of the feed's newest value", labels=["feed"])
        polls = CounterMetricFamily("geodns_load_feed_polls", "feed polls", labels=["feed"])
        failures = CounterMetricFamily("geodns_load_feed_failures",
                                       "failed feed polls (unreachable, HTTP error, bad "
                                       "payload); the last good values were kept",
                                       labels=["feed"])
        stale_events = CounterMetricFamily("geodns_load_feed_stale_events",
                                           "times the feed's data went stale", labels=["feed"])
        for name, s in m.feeds():
            up.add_metric([name], 1.0 if s.ok else 0.0)
            stale.add_metric([name], 1.0 if s.stale else 0.0)
            newest = s.newest()
            if newest is not None:
                age.add_metric([name], max(0.0, now - newest))
            polls.add_metric([name], s.polls)
            failures.add_metric([name], s.failures)
            stale_events.add_metric([name], s.stale_events)
        load = GaugeMetricFamily("geodns_pop_load", "current load of the POP (fresh values "
                                 "only), in the unit of its capacity", labels=["pop"])
        capacity = GaugeMetricFamily("geodns_pop_capacity", "configured capacity of the POP",
                                     labels=["pop"])
        for pop, smp in sorted(m.snapshot.samples.items()):
            if not smp.stale:
                load.add_metric([pop], smp.value)
        for name, pop_cfg in sorted(m.config.pops.items()):
            if pop_cfg.capacity is not None:
                capacity.add_metric([name], pop_cfg.capacity)
        yield from (up, stale, age, polls, failures, stale_events, load, capacity)
