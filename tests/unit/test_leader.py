"""Leader election against a fake Lease API and fake clocks: a candidate takes a Lease over only
after seeing it unchanged for the lease duration, whatever renewTime says; replicas whose clocks
disagree by more than a lease never act at once; a leader that cannot renew steps down before
anyone may take over."""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes import client

from ucloud_operator.leader import (
    Election,
    KubernetesLeaseApi,
    LeaderElector,
    LeaseError,
    LeaseRecord,
    LeaseTiming,
    LeaseUnusable,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TIMING = LeaseTiming()  # 15 s lease, 10 s renew deadline, 2 s retry


class Store:
    """The API server's copy of the one Lease: every write bumps the resourceVersion, and a
    write that names an older one is refused (409), as the API server does."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.writes: list[dict[str, Any]] = []

    def put(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        lease = copy.deepcopy(body)
        lease.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.lease = lease
        self.writes.append(copy.deepcopy(lease))
        return copy.deepcopy(lease)


class FakeLeaseApi:
    """One replica's connection to the `Store`: `down` makes every request fail as an
    unreachable API server does; `refuse` answers a verb with a status."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False
        self.refuse: dict[str, int] = {}
        self.before_write: Callable[[], Awaitable[None]] | None = None
        self.dry_runs: list[str] = []

    def _check(self, verb: str) -> None:
        if self.down:
            raise LeaseError(0, "connection refused")
        if verb in self.refuse:
            raise LeaseError(self.refuse[verb], f"{verb} refused")

    async def get(self) -> dict[str, Any] | None:
        self._check("get")
        return copy.deepcopy(self.store.lease)

    async def create(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self._check("create")
        if self.before_write is not None:
            await self.before_write()
        if self.store.lease is not None:
            raise LeaseError(409, "already exists")
        if dry_run:
            self.dry_runs.append("create")
            return copy.deepcopy(body)
        return self.store.put(body)

    async def replace(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self._check("update")
        if self.before_write is not None:
            await self.before_write()
        if self.store.lease is None:
            raise LeaseError(404, "not found")
        version = body.get("metadata", {}).get("resourceVersion")
        if version and version != self.store.lease["metadata"]["resourceVersion"]:
            raise LeaseError(409, "the object has been modified")
        if dry_run:
            self.dry_runs.append("update")
            return copy.deepcopy(body)
        return self.store.put(body)


class World:
    """Real time, which no replica reads: each has its own monotonic clock (an offset of it)
    and its own wall clock (skewed)."""

    def __init__(self) -> None:
        self.t = 0.0

    def candidate(
        self, store: Store, identity: str, *, mono: float = 0.0, skew: float = 0.0,
        on_started_leading: Callable[[], None] = lambda: None,
    ) -> tuple[LeaderElector, FakeLeaseApi]:
        api = FakeLeaseApi(store)
        elector = LeaderElector(
            api, "ns", "lease", identity, timing=TIMING,
            on_started_leading=on_started_leading,
            clock=lambda: self.t + mono,
            wall=lambda: EPOCH + timedelta(seconds=self.t + skew),
        )
        return elector, api


def held_by(holder: str, renew_time: str, version: str = "7") -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "lease", "namespace": "ns", "resourceVersion": version},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": renew_time, "renewTime": renew_time, "leaseTransitions": 3},
    }


async def steps_until(world: World, elector: LeaderElector, until: float,
                      every: float = TIMING.retry) -> list[tuple[float, bool]]:
    """Step `elector` every `every` seconds of real time up to `until`; (time, leading)."""
    seen = []
    while world.t <= until:
        seen.append((world.t, await elector.step()))
        world.t += every
    return seen


# ---------------------------------------------------------------- the decision alone


def test_timing_refuses_a_renew_deadline_not_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="renew_deadline < duration"):
        LeaseTiming(duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="retry < renew_deadline"):
        LeaseTiming(duration=15, renew_deadline=2, retry=2)


def test_the_decision_counts_from_the_last_change_it_saw_not_from_renew_time() -> None:
    election = Election("me", TIMING)
    far_past = LeaseRecord("other", 15, "2000-01-01T00:00:00.000000Z",
                           "2000-01-01T00:00:00.000000Z", 0, "1")
    election.observe(far_past, now=100.0)
    assert not election.may_write(100.0)
    election.observe(far_past, now=114.9)  # unchanged: the clock does not restart
    assert not election.may_write(114.9)
    assert election.may_write(115.0)
    renewed = LeaseRecord("other", 15, far_past.acquire_time, far_past.renew_time, 0, "2")
    election.observe(renewed, now=116.0)  # only the resourceVersion moved: a write
    assert not election.may_write(130.9)
    assert election.may_write(131.0)


def test_the_decision_honours_the_holders_lease_duration() -> None:
    election = Election("me", TIMING)
    election.observe(LeaseRecord("other", 40, None, None, 0, "1"), now=0.0)
    assert not election.may_write(39.9)
    assert election.may_write(40.0)


def test_a_free_lease_or_our_own_may_be_written_at_once() -> None:
    election = Election("me", TIMING)
    assert election.may_write(0.0)  # none yet
    election.observe(LeaseRecord("", 15, None, None, 4, "9"), now=0.0)
    assert election.may_write(0.0)  # released
    election.observe(LeaseRecord("me", 15, None, None, 4, "10"), now=1.0)
    assert election.may_write(1.0)


def test_leading_ends_at_the_renew_deadline_counted_from_before_the_write() -> None:
    election = Election("me", TIMING)
    election.wrote(LeaseRecord("me", 15, None, None, 0, "1"), started=5.0, now=6.5)
    assert election.leading(14.9)
    assert not election.leading(15.0)  # 5.0 + renew deadline, not 6.5 + it


# ---------------------------------------------------------------- one candidate


async def test_a_missing_lease_is_created_with_the_writers_wall_clock() -> None:
    world, store = World(), Store()
    elector, _ = world.candidate(store, "a", skew=3600)
    assert await elector.step()
    spec = store.lease["spec"] if store.lease else {}
    assert spec == {"holderIdentity": "a", "leaseDurationSeconds": 15,
                    "acquireTime": "2026-01-01T01:00:00.000000Z",
                    "renewTime": "2026-01-01T01:00:00.000000Z", "leaseTransitions": 0}
    world.t = 2.0
    assert await elector.step()
    spec = store.lease["spec"] if store.lease else {}
    assert spec["renewTime"] == "2026-01-01T01:00:02.000000Z"
    assert spec["acquireTime"] == "2026-01-01T01:00:00.000000Z"  # kept while held
    assert spec["leaseTransitions"] == 0


async def test_a_holder_with_renew_time_far_in_the_future_is_taken_over_after_a_lease() -> None:
    world, store = World(), Store()
    store.lease = held_by("gone", "2100-01-01T00:00:00.000000Z")
    elector, _ = world.candidate(store, "a", mono=5000.0)
    assert not await elector.step()  # t = 0: first seen
    world.t = 14.9
    assert not await elector.step()
    world.t = 15.0
    assert await elector.step()  # not blocked until 2100
    spec = store.lease["spec"] if store.lease else {}
    assert spec["holderIdentity"] == "a"
    assert spec["leaseTransitions"] == 4
    assert spec["acquireTime"] == spec["renewTime"] == "2026-01-01T00:00:15.000000Z"


async def test_a_holder_with_renew_time_far_in_the_past_is_not_taken_over_at_once() -> None:
    world, store = World(), Store()
    store.lease = held_by("gone", "2000-01-01T00:00:00.000000Z")
    elector, _ = world.candidate(store, "a", mono=-300.0)
    seen = await steps_until(world, elector, until=16.0)
    assert [t for t, leading in seen if leading] == [16.0]  # 0..14 no, 16 yes
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"


async def test_a_live_holder_whose_clock_is_an_hour_behind_is_never_taken_over() -> None:
    world, store = World(), Store()
    holder, _ = world.candidate(store, "holder", skew=-3600)
    candidate, _ = world.candidate(store, "candidate", mono=77.0, skew=+3600)
    for _ in range(100):  # 200 s
        assert await holder.step()
        world.t += 1.0
        assert not await candidate.step()
        world.t += 1.0
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "holder"


async def test_a_released_lease_is_taken_at_once() -> None:
    world, store = World(), Store()
    first, _ = world.candidate(store, "a")
    second, _ = world.candidate(store, "b")
    assert await first.step()
    world.t = 1.0
    assert not await second.step()
    await first.release()
    assert not first.is_leader
    spec = store.lease["spec"] if store.lease else {}
    assert "holderIdentity" not in spec and "renewTime" not in spec
    world.t = 3.0
    assert await second.step()


async def test_of_two_takeovers_from_the_same_read_one_wins() -> None:
    world, store = World(), Store()
    store.lease = held_by("gone", "2026-01-01T00:00:00.000000Z")
    first, _ = world.candidate(store, "a")
    second, second_api = world.candidate(store, "b")
    assert not await first.step()
    assert not await second.step()
    world.t = 15.0

    async def first_writes_in_between() -> None:
        second_api.before_write = None
        assert await first.step()

    second_api.before_write = first_writes_in_between
    assert not await second.step()  # its write named the old resourceVersion: 409
    assert first.is_leader and not second.is_leader
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"


# ---------------------------------------------------------------- stepping down


async def test_the_leader_steps_down_when_renewals_fail_past_the_renew_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, store = World(), Store()
    leader, leader_api = world.candidate(store, "a", mono=1e6, skew=-7200)
    standby, _ = world.candidate(store, "b", mono=-1e6, skew=+7200)
    assert await leader.step()  # t = 0
    world.t = 0.5
    assert not await standby.step()  # sees the write
    leader_api.down = True
    world.t = 9.9
    assert leader.is_leader  # no step since t = 0: a hung renewal
    world.t = 10.0
    assert not leader.is_leader  # the deadline alone ends it
    with caplog.at_level(logging.WARNING, "ucloud_operator.leader"):
        assert not await leader.step()
    assert "stepping down" in caplog.text
    world.t = 15.4
    assert not await standby.step()  # 14.9 s after it saw the last renewal
    world.t = 15.5
    assert await standby.step()
    assert not leader.is_leader


async def test_a_leader_that_stepped_down_and_still_holds_the_lease_acts_again() -> None:
    world, store = World(), Store()
    started: list[float] = []
    leader, api = world.candidate(store, "a", on_started_leading=lambda: started.append(world.t))
    assert await leader.step()
    api.down = True
    world.t = 12.0
    assert not await leader.step()
    api.down = False  # nobody took it meanwhile: the compare-and-swap renewal succeeds
    world.t = 14.0
    assert await leader.step()
    assert started == [0.0, 14.0]  # told again, so it resyncs every job


# ---------------------------------------------------------------- skewed clocks, simulated


@pytest.mark.parametrize("seed", range(6))
async def test_candidates_whose_clocks_differ_by_more_than_a_lease_never_act_at_once(
    seed: int,
) -> None:
    """Three replicas, wall clocks hours apart and monotonic clocks with unrelated origins, on
    a flaky network (each replica cut off now and then), crashing and coming back as new
    processes. Checked every 0.25 s of real time: at most one acts."""
    rng = random.Random(seed)
    world, store = World(), Store()
    skews = {"a": 0.0, "b": 3 * 3600.0, "c": -5 * 3600.0}
    replicas: dict[str, tuple[LeaderElector, FakeLeaseApi, float]] = {}
    starts = dict.fromkeys(skews, 0)

    def start(name: str) -> None:
        starts[name] += 1
        elector, api = world.candidate(store, f"{name}-{starts[name]}",
                                       mono=rng.uniform(-1e5, 1e5), skew=skews[name])
        replicas[name] = (elector, api, world.t + rng.uniform(0, TIMING.retry))

    for name in skews:
        start(name)
    dead: dict[str, float] = {}
    leaders: list[str] = []
    led = 0
    tick = 0.25
    while world.t < 1800:
        for name, (elector, api, next_step) in list(replicas.items()):
            if name in dead:
                continue
            if world.t >= next_step:
                await elector.step()
                replicas[name] = (elector, api, next_step + TIMING.retry)
        acting = [name for name, (elector, _, _) in replicas.items()
                  if name not in dead and elector.is_leader]
        assert len(acting) <= 1, f"t={world.t}: {acting} act at once"
        if acting:
            led += 1
            if not leaders or leaders[-1] != acting[0]:
                leaders.append(acting[0])
        if rng.random() < 0.02:  # cut off or reconnect one replica
            _, api, _ = replicas[rng.choice(list(replicas))]
            api.down = not api.down
        if rng.random() < 0.004 and len(dead) < 2:  # SIGKILL one: its Lease is not released
            dead[rng.choice([n for n in replicas if n not in dead])] = world.t
        for name, since in list(dead.items()):
            if world.t - since > 30:
                del dead[name]
                start(name)
        world.t += tick
    assert len(leaders) >= 3, leaders  # leadership moved: the check saw takeovers
    assert led * tick > 600, "nobody led most of the time"


# ---------------------------------------------------------------- the official client


async def test_the_official_client_reads_and_writes_the_lease_as_json() -> None:
    lease = held_by("a", "2026-01-01T00:00:00.000000Z")
    seen: list[tuple[str, str]] = []

    async def read(request: web.Request) -> web.Response:
        seen.append(("GET", request.path))
        if request.match_info["name"] == "absent":
            return web.json_response({"kind": "Status", "message": "not found"}, status=404)
        return web.json_response(lease)

    async def replace(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(("PUT", request.query.get("dryRun", "")))
        if body["metadata"].get("resourceVersion") != "7":
            return web.json_response({"kind": "Status", "message": "modified"}, status=409)
        return web.json_response({**body, "metadata": {**body["metadata"],
                                                       "resourceVersion": "8"}})

    async def create(request: web.Request) -> web.Response:
        seen.append(("POST", request.query.get("dryRun", "")))
        return web.json_response({"kind": "Status", "message": 'namespaces "ns" not found'},
                                 status=404)

    app = web.Application()
    base = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
    app.router.add_get(base + "/{name}", read)
    app.router.add_put(base + "/{name}", replace)
    app.router.add_post(base, create)
    server = TestServer(app)
    await server.start_server()
    configuration = client.Configuration()
    configuration.host = str(server.make_url("")).rstrip("/")
    api = KubernetesLeaseApi(client.ApiClient(configuration), "ns", "lease")
    absent = KubernetesLeaseApi(client.ApiClient(configuration), "ns", "absent")
    try:
        got = await api.get()
        assert got == lease
        assert await absent.get() is None
        written = await api.replace(json.loads(json.dumps(lease)))
        assert written["metadata"]["resourceVersion"] == "8"
        stale = {**lease, "metadata": {**lease["metadata"], "resourceVersion": "6"}}
        with pytest.raises(LeaseError) as conflict:
            await api.replace(stale, dry_run=True)
        assert (conflict.value.status, conflict.value.message) == (409, "modified")
        with pytest.raises(LeaseError) as missing:
            await api.create(lease)
        assert missing.value.status == 404 and "not found" in missing.value.message
    finally:
        api.close()
        absent.close()
        await server.close()
    assert seen == [("GET", base + "/lease"), ("GET", base + "/absent"), ("PUT", ""),
                    ("PUT", "All"), ("POST", "")]


# ---------------------------------------------------------------- checked at start


@pytest.mark.parametrize(
    ("lease", "refuse", "verb"),
    [
        (None, {"get": 403}, "get"),
        (None, {"create": 403}, "create"),
        (None, {"create": 404}, "create"),  # the namespace does not exist
        (None, {"update": 403}, "update"),
        (held_by("other", "2026-01-01T00:00:00.000000Z"), {"update": 403}, "update"),
    ],
)
async def test_a_lease_it_may_not_use_is_unusable_at_start(
    lease: dict[str, Any] | None, refuse: dict[str, int], verb: str
) -> None:
    world, store = World(), Store()
    store.lease = copy.deepcopy(lease)
    elector, api = world.candidate(store, "a")
    api.refuse = refuse
    with pytest.raises(LeaseUnusable) as unusable:
        await elector.check_access()
    message = str(unusable.value)
    assert f"lease ns/lease for leader election ({verb}: {verb} refused)" in message
    assert "--no-leader-elect" in message
    assert store.lease == lease and not store.writes  # nothing written


@pytest.mark.parametrize(
    ("lease", "refuse", "dry_runs"),
    [
        (None, {}, ["create"]),  # then a dry-run update of the absent Lease: 404, allowed
        (held_by("other", "2026-01-01T00:00:00.000000Z"), {}, ["update"]),
        (None, {"get": 0}, []),  # unreachable: left to run(), which keeps trying
        (None, {"get": 500}, []),
        (None, {"get": 429}, []),
        (None, {"create": 409}, []),  # created meanwhile
        (held_by("other", "2026-01-01T00:00:00.000000Z"), {"update": 409}, []),
    ],
)
async def test_a_lease_it_may_use_or_cannot_check_now_passes(
    lease: dict[str, Any] | None, refuse: dict[str, int], dry_runs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, store = World(), Store()
    store.lease = copy.deepcopy(lease)
    elector, api = world.candidate(store, "a")
    api.refuse = refuse
    await elector.check_access()
    assert api.dry_runs == dry_runs
    assert store.lease == lease and not store.writes
    if refuse.get("get") in (0, 500, 429):
        assert "could not check lease ns/lease" in caplog.text
