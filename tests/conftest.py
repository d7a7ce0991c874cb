"""The suite's root: lanes and worlds.

- Lanes: a test's markers ``slow`` (compiles circuits, real proofs), ``chain`` (an anvil devnet), ``npm`` (the
  npm tools), ``browser`` (headless Chromium) and ``release`` (the wheel, the image, the docs site) come from what it
  uses, assigned at collection: the fixtures it needs, directly or through other fixtures (``LANES``), and the
  test helpers its module imports (``MODULE_LANES``), besides any marker written on it. ``make test-fast`` runs the
  unit lane (none of them). ``LaneGuard`` keeps the labels true: a test that starts a devnet outside the ``chain``
  lane, or compiles or proves with EZKL in this process outside the ``slow`` lane, fails and says which lane it
  needs.

- ``soak`` tests (long, repeated scenarios) run only when asked (``--soak``, ``make soak``); so do ``mutants`` tests
  (each contract invariant's random search finding its planted bug: ``--mutants``, ``make mutants``).
- Times: ``--times DIR`` records each test's phases and each fixture's setup, one JSON-lines file per process (the
  controller and each worker), for ``scripts/test_times.py`` (``make times``: the table in ``tests/TIMES.md``).
- Worlds: tests that use a folder's session fixtures (a compiled model, a devnet, a node home: its ``conftest.py``)
  share that world, so under several workers (``-n N``, pytest-xdist) they run on one worker, which builds the world
  once, while other worlds run beside it (``WorldScheduling``). A test that uses no folder's session fixture is
  grouped with its file only (module fixtures are built once per file).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def released_wheel() -> Path:
    """The wheel built once per run from a clean clone (``tests/support/clean_wheel.py``): the wheel's and the
    image's tests share it, and so one world (one worker builds it)."""
    from clean_wheel import clean_wheel

    return clean_wheel()


class _Times:
    """One process's records: test phases (setup, call, teardown) and fixture setups, with the worker's name."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.out = (folder / f"{self.worker}.jsonl").open("w")
        self.started = time.time()
        self.test = ""
        self._watch_ezkl()

    EZKL_CALLS = ("gen_settings", "calibrate_settings", "compile_circuit", "setup", "gen_witness", "prove",
                  "verify", "create_evm_verifier")

    def _watch_ezkl(self) -> None:
        """Each EZKL call in this process, with its seconds and a digest of the file it starts from (its model,
        compiled circuit or witness): where the suite compiles or proves the same thing twice."""
        try:
            import ezkl
        except ImportError:  # pragma: no cover - a dependency of the package
            return
        import hashlib

        def timed(name: str, call: Any) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                first = args[0] if args else next(iter(kwargs.values()), None)
                try:
                    digest = hashlib.sha256(Path(str(first)).read_bytes()).hexdigest()[:12]
                except (OSError, ValueError, TypeError):
                    digest = ""
                started = time.perf_counter()
                try:
                    return call(*args, **kwargs)
                finally:
                    self.write(kind="ezkl", op=name, test=self.test, digest=digest,
                               s=round(time.perf_counter() - started, 3))
            return run

        for name in self.EZKL_CALLS:
            if hasattr(ezkl, name):
                setattr(ezkl, name, timed(name, getattr(ezkl, name)))

    def write(self, **record: Any) -> None:
        self.out.write(json.dumps({"worker": self.worker, **record}) + "\n")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.write(kind="fixture", name=fixturedef.argname, scope=fixturedef.scope,
                   where=fixturedef.baseid or "(plugin)", test=getattr(request, "_pyfuncitem", request.node).nodeid,
                   s=round(time.perf_counter() - started, 4))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Iterator[Any]:
        self.write(kind="test", test=item.nodeid, world=world(item))
        self.test = item.nodeid
        before = _cpu_seconds()
        try:
            return (yield)
        finally:  # this process's CPU and its reaped children's (a node or prover it started and stopped)
            self.write(kind="cpu", test=item.nodeid, s=round(_cpu_seconds() - before, 3))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if getattr(report, "node", None) is not None:
            return  # a worker's report heard by the xdist controller: the worker wrote it already
        self.write(kind="phase", test=report.nodeid, when=report.when, outcome=report.outcome,
                   s=round(report.duration, 4))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.write(kind="session", s=round(time.time() - self.started, 2), tests=session.testscollected)
        self.out.close()


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured_worlds() -> dict[str, float]:
    """Each world's seconds as ``make times`` last measured them (``tests/worlds.json``; none: empty)."""
    try:
        return {str(k): float(v) for k, v in json.loads(WORLD_SECONDS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


COMPILES_ENV = "TEST_COMPILE_CACHE"  # the session's compiled models (tests/support/compiled.py), for every worker
DEV_SRS_ENV = "TEST_DEV_SRS"  # the session's dev SRS files, one per logrows, for every worker (``share_dev_srs``)


def share_dev_srs(folder: Path) -> None:
    """Every home the tests make in this process gets the session's dev SRS of a logrows (EZKL's ``gen_srs``, run
    once under a file lock for all workers, then copied in) instead of a fresh random one: the same circuit in two
    homes then has the same keys and the same Solidity verifier, which solcjs compiles once (its cache) instead of
    once per home. A dev SRS is trusted by nothing (every check of one is about its kind, never its randomness)."""
    import fcntl
    import shutil

    from proofmarket.systems.ezkl import ezkl_calls

    made = ezkl_calls.gen_srs

    def shared(path: Any, logrows: int) -> None:
        if not Path(path).name.startswith(f"dev-k{logrows}."):  # not a home's dev SRS (SrsProvider): a test's own
            made(path, logrows)
            return
        source = folder / f"dev-k{logrows}.srs"
        with (folder / f"dev-k{logrows}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not source.is_file():
                made(folder / f"dev-k{logrows}.tmp", logrows)
                os.replace(folder / f"dev-k{logrows}.tmp", source)
        shutil.copyfile(source, path)

    ezkl_calls.gen_srs = shared  # type: ignore[assignment]


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LaneGuard(), "proofmarket-lanes")
    if not os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get(COMPILES_ENV):
        import tempfile

        os.environ[COMPILES_ENV] = tempfile.mkdtemp(prefix="proofmarket-compiles-")
        config.stash[_MADE_CACHE] = os.environ[COMPILES_ENV]
        os.environ[DEV_SRS_ENV] = str(Path(os.environ[COMPILES_ENV]) / "dev-srs")
        Path(os.environ[DEV_SRS_ENV]).mkdir()
    if os.environ.get(DEV_SRS_ENV):
        share_dev_srs(Path(os.environ[DEV_SRS_ENV]))
    folder = config.getoption("--times")
    if folder:
        config.pluginmanager.register(_Times(Path(folder)), "proofmarket-times")
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER") and \
            config.pluginmanager.hasplugin("xdist"):  # the controller of several workers
        import tempfile

        handle, path = tempfile.mkstemp(prefix="proofmarket-worlds-", suffix=".json")
        os.close(handle)
        os.environ[WORLDS_ENV] = path  # the workers start after this, with it in their environment
        config.pluginmanager.register(WorldScheduling(), "proofmarket-worlds")


def pytest_unconfigure(config: pytest.Config) -> None:
    made = config.stash.get(_MADE_CACHE, None)
    if made is not None:
        import shutil

        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(COMPILES_ENV, None)
        os.environ.pop(DEV_SRS_ENV, None)
    if config.pluginmanager.has_plugin("proofmarket-worlds"):
        Path(os.environ.pop(WORLDS_ENV)).unlink(missing_ok=True)


def world(item: pytest.Item) -> str:
    """The outermost folder whose session fixtures ``item`` uses (``tests/api``), else its file."""
    info = getattr(item, "_fixtureinfo", None)
    folders = {d.baseid.split("::")[0] for defs in (info.name2fixturedefs.values() if info else ())
               for d in defs if d.scope == "session" and d.baseid}
    return min(folders, key=len) if folders else item.nodeid.split("::")[0]


LANE_MARKERS = ("slow", "chain", "npm", "browser", "release")
# the fixtures that build a world of a lane (a test needing one directly or through another fixture is in it);
# "name@path" (a folder or a file) where the same name means something else elsewhere
LANES: dict[str, tuple[str, ...]] = {
    # anvil devnets and what is deployed on them
    "devnet": ("chain",), "session_chain": ("chain",), "chain": ("chain",), "escrow_devnet": ("chain",),
    "market_devnet": ("chain",), "session_market": ("chain",), "market": ("chain",), "sepolia": ("chain",),
    "cli_home": ("chain",), "chain_home": ("chain",), "contract_payer": ("chain",), "cheater": ("chain",),
    "factory@tests/payments/exact": ("chain",), "rpc_url@tests/chain/test_chain_rpc_session.py": ("chain",),
    # EZKL compiles and proofs
    "mlp_id": ("slow",), "private_mlp_id": ("slow",), "batched_id": ("slow",), "mlp_store": ("slow",),
    "listed_node": ("slow", "chain", "npm"), "built@tests/contracts": ("slow",), "env@tests/intake": ("slow", "chain"),
    "net": ("slow", "chain"), "batch_model": ("slow",), "shared_model": ("slow",), "models": ("slow",),
    "private_model": ("slow",), "fresh@tests/onchain": ("slow",), "served_model": ("slow",), "lm_node": ("slow",),
    "mcp_node": ("slow",), "listed@tests/payments/exact": ("slow",), "hashed_id": ("slow",), "onnx_id": ("slow",),
    "mlp@tests/systems/ezkl": ("slow",), "logreg@tests/systems/ezkl": ("slow",), "batched": ("slow",),
    "hashed_mlp": ("slow",), "proved": ("slow",), "proofs": ("slow",), "sliced_mlp": ("slow",), "sliced_id": ("slow",),
    "sliced_chain": ("slow", "chain"),
    "node@tests/payments/test_facilitator_http.py": ("slow",),
    "node@tests/payments/exact/test_x402_attested_pending.py": ("slow", "chain"),
    "lm_id@tests/intake": ("slow",),
    # the release builds and the npm tools
    "ipfs_car": ("npm",), "image": ("npm", "release"), "buildah": ("release",), "wheel": ("release",),
    "installed": ("release",), "site": ("release",),
    "released_wheel": ("release",),
}
# the test helpers whose use puts a test module in a lane
MODULE_LANES: dict[str, tuple[str, ...]] = {"browser_wallet": ("browser",), "clean_wheel": ("release",),
                                            "ipfs_node": ("npm",)}


_LANES_BY_NAME: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
for _key, _lanes in LANES.items():
    _name, _, _where = _key.partition("@")
    _LANES_BY_NAME.setdefault(_name, []).append((_where, _lanes))


def lanes(item: pytest.Item) -> set[str]:
    """The lanes ``item`` is in: from its fixtures (``LANES``), its module's helpers (``MODULE_LANES``) and its
    own markers."""
    found = {m.name for m in item.iter_markers() if m.name in LANE_MARKERS}
    info = getattr(item, "_fixtureinfo", None)
    for name, defs in (info.name2fixturedefs.items() if info else ()):
        where = defs[-1].baseid.split("::")[0]  # the definition this test gets (the closest one)
        for path, names in _LANES_BY_NAME.get(name, ()):
            if not path or where == path or where.startswith(path + "/"):
                found.update(names)
    module = getattr(item, "module", None)
    for value in (vars(module).values() if module is not None else ()):
        found.update(MODULE_LANES.get(getattr(value, "__module__", None) or getattr(value, "__name__", ""), ()))
    return found


class LaneGuard:
    """Fails a test whose setup or call did what its lanes do not say: started a devnet (``chain``), or ran EZKL's
    compile, key setup or proof in this process (``slow``; the anvil a compile starts to check its verifier is
    part of the compile)."""

    EZKL_CALLS = ("compile_circuit", "setup", "prove")  # a dry run's settings and calibration are not a compile

    def __init__(self) -> None:
        self.used: set[str] = set()
        from proofmarket.chain.devnet import Devnet

        start = Devnet.start
        guard = self

        def started(devnet: Any, *args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__")  # noqa: SLF001 (who starts it)
            guard.used.add("slow" if caller == "proofmarket.systems.ezkl.evm_check" else "chain")  # a compile's own
            return start(devnet, *args, **kwargs)

        Devnet.start = started  # type: ignore[method-assign]
        try:
            import ezkl
        except ImportError:  # pragma: no cover - a dependency of the package
            return
        for name in self.EZKL_CALLS:
            setattr(ezkl, name, self._noting(getattr(ezkl, name)))

    def _noting(self, call: Any) -> Any:
        def noted(*args: Any, **kwargs: Any) -> Any:
            self.used.add("slow")
            return call(*args, **kwargs)

        return noted

    def _check(self, item: pytest.Item) -> None:
        missing, self.used = self.used - lanes(item), set()
        if missing:
            what = {"chain": "started an anvil devnet", "slow": "ran an EZKL compile or proof"}
            pytest.fail(f"{item.nodeid} {' and '.join(what[m] for m in sorted(missing))} but is not in the "
                        f"{'/'.join(sorted(missing))} lane: add the fixture that does it to LANES in "
                        "tests/conftest.py (or mark the test)", pytrace=False)

    def _watched(self, item: pytest.Item) -> Iterator[None]:
        self.used = set()
        result = yield
        self._check(item)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        return (yield from self._watched(item))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        return (yield from self._watched(item))


_MADE_CACHE = pytest.StashKey[str]()
WORLDS_ENV = "TEST_WORLDS_FILE"  # the file where a worker writes each test's world for the controller


OPT_IN = ("soak", "mutants", "corpus")  # lanes outside CI's, run only when asked (--soak, --mutants, --corpus)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for lane in OPT_IN:
        if not config.getoption(f"--{lane}"):
            out = [item for item in items if item.get_closest_marker(lane) is not None]
            if out:
                config.hook.pytest_deselected(items=out)
                items[:] = [item for item in items if item.get_closest_marker(lane) is None]
    for item in items:
        for lane in lanes(item) - {m.name for m in item.iter_markers()}:
            item.add_marker(lane)
    target = os.environ.get(WORLDS_ENV)
    if target and os.environ.get("PYTEST_XDIST_WORKER"):  # every worker collects the same tests: any may write
        part = Path(f"{target}.{os.environ['PYTEST_XDIST_WORKER']}")
        part.write_text(json.dumps({item.nodeid: world(item) for item in items}))
        os.replace(part, target)


WORLD_SECONDS = Path(__file__).with_name("worlds.json")  # each world's measured seconds (``make times`` writes it)


class WorldScheduling:
    """xdist's scope scheduling with a test's world as its scope (read from what the workers wrote), the longest
    worlds first (as ``make times`` last measured them; a world it never saw counts its tests)."""

    @staticmethod
    def make(config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
            worlds: dict[str, str] | None = None
            measured: dict[str, float] | None = None

            def _split_scope(self, nodeid: str) -> str:
                if self.worlds is None:
                    self.worlds = json.loads(Path(os.environ[WORLDS_ENV]).read_text())
                return self.worlds.get(nodeid, nodeid.split("::")[0])

            def _assign_work_unit(self, node: Any) -> None:
                if self.measured is None:
                    self.measured = measured_worlds()
                cost = {w: self.measured.get(w, 2.0 * len(ids)) for w, ids in self.workqueue.items()}
                self.workqueue.move_to_end(max(cost, key=lambda w: cost[w]), last=False)  # the longest next
                super()._assign_work_unit(node)

        return Scheduling(config, log)

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return self.make(config, log)
