"""One model served by several replicas (``base_url`` a list): calls spread over the least loaded, a replica that dies
mid-run is taken out and its calls go to the others (nothing lost, nothing repeated), cache keys do not depend on the
replicas, bad replica lists are one-line input errors; vLLM's parallel sizes are checked against the GPUs; and every
TOML example of docs/scale-out.md loads."""

from __future__ import annotations

import doctest
import re
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import ROOT, run_cli, write_config, write_questions

import evalsuite.backends.openai as openai_backend
from evalsuite.backends import ChatRequest, ChatResult, NullProgress, make_backend
from evalsuite.backends.openai import COOLDOWN_CAP_S, COOLDOWN_S, EJECT_AFTER_FAILURES, OpenAIBackend, ReplicaPool
from evalsuite.backends.vllm import check_parallel_sizes
from evalsuite.bench import read_questions
from evalsuite.config import ModelSpec, load_config
from evalsuite.errors import InputError
from evalsuite.generate import generate, model_identity
from evalsuite.records import Question
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer, FaultPlan

STRENGTHS = {"sft": 0.0, "dpo": 1.0}


def test_doctests() -> None:
    assert doctest.testmod(openai_backend).failed == 0


@pytest.fixture
def replicas() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    # a little latency, so calls overlap and "least loaded" has something to weigh
    with FakeOpenAIServer(strengths=STRENGTHS, latency=0.002) as a, FakeOpenAIServer(strengths=STRENGTHS, latency=0.002) as b:
        yield a, b


def _requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(f"k{i}", ({"role": "user", "content": f"question {i}"},), max_tokens=8) for i in range(n)]


def _spec(urls: Any, **kw: Any) -> ModelSpec:
    return ModelSpec("sft", backend="openai", model="sft", base_url=urls, **{"concurrency": 16, "max_retries": 1, **kw})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ok(srv: FakeOpenAIServer) -> int:
    return int(srv.stats()["successful"])


# ------------------------------------------------------------------------------------------- spreading the calls


def test_calls_spread_over_both_replicas(replicas: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = replicas
    backend = make_backend(_spec([a.base_url, b.base_url]))
    done: dict[str, ChatResult] = {}

    def on_done(req: ChatRequest, res: ChatResult) -> None:
        assert req.key not in done
        done[req.key] = res

    backend.run(_requests(200), on_done, NullProgress())
    assert len(done) == 200 and all(r.error is None and r.text.startswith("«sft»") for r in done.values())
    assert _ok(a) + _ok(b) == 200 and a.stats()["total_requests"] + b.stats()["total_requests"] == 200
    assert min(_ok(a), _ok(b)) >= 60, (_ok(a), _ok(b))  # equal servers share the load, roughly evenly
    assert isinstance(backend, OpenAIBackend)
    stats = backend.replica_stats()
    assert [(s.url, s.calls, s.answered, s.failed, s.ejections) for s in stats] == [
        (a.base_url, _ok(a), _ok(a), 0, 0), (b.base_url, _ok(b), _ok(b), 0, 0)]


def test_a_single_url_is_no_pool_and_keeps_its_identity(replicas: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, _ = replicas
    backend = OpenAIBackend(_spec(a.base_url))
    assert backend.pool is None and backend.replica_stats() == []
    assert model_identity(_spec(a.base_url)) == {"backend": "openai", "model": "sft", "base_url": a.base_url, "adapter": None}


def test_least_loaded_then_round_robin_and_the_cooldown_doubles_up_to_its_cap() -> None:
    now = [0.0]
    pool = ReplicaPool(["a", "b", "c"], clock=lambda: now[0])
    first = [pool.pick() for _ in range(3)]
    assert [r.url for r in first if r] == ["a", "b", "c"]
    pool.release(first[1], ok=True)  # b is now the least loaded
    assert (r := pool.pick()) is not None and r.url == "b"

    a = first[0]
    assert a is not None
    for k in range(EJECT_AFTER_FAILURES):  # failures in a row short of the limit keep it in rotation
        if k:
            assert pool.pick(exclude={"b", "c"}) is a
        pool.release(a, ok=False)
        assert pool.in_rotation(a) == (k < EJECT_AFTER_FAILURES - 1)
    assert a.stats.ejections == 1 and a.out_until == COOLDOWN_S

    cooldowns = []
    for _ in range(10):  # back on probation, one more failure takes it out again, for twice as long
        now[0] = a.out_until
        assert pool.pick(exclude={"b", "c"}) is a and pool.pick(exclude={"b", "c"}) is None  # one probation call
        pool.release(a, ok=False)
        cooldowns.append(round(a.out_until - now[0], 6))
    assert cooldowns[:3] == [2 * COOLDOWN_S, 4 * COOLDOWN_S, 8 * COOLDOWN_S] and max(cooldowns) == COOLDOWN_CAP_S
    now[0] = a.out_until
    assert pool.pick(exclude={"b", "c"}) is a
    pool.release(a, ok=True)  # a success ends probation and the streak
    assert not a.probation and a.ejections_in_row == 0 and a.stats.ejections == 11


# ------------------------------------------------------------------------------------------- a replica goes down


class _StopAfter:
    """A progress bar that stops one replica after ``k`` finished calls (the bar advances after each is stored)."""

    def __init__(self, srv: FakeOpenAIServer, k: int) -> None:
        self.srv, self.k, self.n = srv, k, 0

    def __call__(self, title: str, total: int) -> "_StopAfter":
        return self

    def __enter__(self) -> "_StopAfter":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def advance(self, n: int = 1, *, error: bool = False) -> None:
        self.n += n
        if self.n == self.k:
            self.srv.stop()

    def add_total(self, n: int) -> None:
        pass


def _questions(tmp_path: Path, n: int) -> list[Question]:
    return read_questions(write_questions(tmp_path / "questions.jsonl", n))


def test_a_replica_stopped_mid_run_loses_and_repeats_nothing(tmp_path: Path, replicas: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = replicas
    questions = _questions(tmp_path, 50)
    planned = 2 * len(questions)  # two turns each
    backend = OpenAIBackend(_spec([a.base_url, b.base_url]))
    with RunStore(tmp_path / "run") as store:
        summary = generate(backend.spec, questions, store, progress=_StopAfter(b, 30), backend=backend)
        assert (summary.requested, summary.errors) == (planned, 0)
        assert sum(len(ans.turns) for ans in store.answers("sft").values()) == planned
    # every call answered exactly once: the stopped replica's unfinished calls were answered by the other
    assert _ok(a) + _ok(b) == planned and _ok(b) < planned // 2
    dead = backend.replica_stats()[1]
    assert dead.ejections >= 1 and dead.failed >= 1 and dead.answered == _ok(b)
    assert backend.replica_stats()[0].failed == 0

    # re-running asks nothing, on the same replicas or on a list with a new one (the list is not in the key)
    with FakeOpenAIServer(strengths=STRENGTHS) as c, RunStore(tmp_path / "run") as store:
        before = _ok(a)
        for urls in ([a.base_url, b.base_url], [a.base_url, c.base_url]):
            again = generate(_spec(urls), questions, store, progress=_StopAfter(b, -1))
            assert (again.requested, again.cached) == (0, planned)
        assert _ok(a) == before and c.stats()["total_requests"] == 0


def test_a_replica_that_keeps_failing_is_taken_out_and_its_calls_answered_elsewhere(tmp_path: Path) -> None:
    broken = FaultPlan(rate_500=1.0, faulty_attempts=10**6)  # every call to it: HTTP 500
    with FakeOpenAIServer(strengths=STRENGTHS) as good, FakeOpenAIServer(strengths=STRENGTHS, faults=broken) as bad:
        backend = OpenAIBackend(_spec([bad.base_url, good.base_url], max_retries=0))
        done: list[ChatResult] = []
        backend.run(_requests(100), lambda req, res: done.append(res), NullProgress())
        assert len(done) == 100 and all(r.error is None for r in done)
        assert _ok(good) == 100 and _ok(bad) == 0
        bad_stats = backend.replica_stats()[0]
        assert bad_stats.ejections >= 1 and bad_stats.failed == bad.stats()["total_requests"] >= EJECT_AFTER_FAILURES


def test_every_replica_down_stops_the_run_and_keeps_what_finished(replicas: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = replicas
    # the SDK's default retry schedule: a refused connection must not wait through it (0.5 + 1 + 2 + 4 + 8 s)
    backend = OpenAIBackend(_spec([a.base_url, b.base_url], max_retries=5))
    done: list[str] = []

    def on_done(req: ChatRequest, res: ChatResult) -> None:
        done.append(req.key)
        if len(done) == 20:
            a.stop()
            b.stop()

    start = time.perf_counter()
    with pytest.raises(InputError, match=r"^cannot reach any replica of model 'sft' .*re-run the same command"):
        backend.run(_requests(200), on_done, NullProgress())
    assert time.perf_counter() - start < 6
    assert 20 <= len(done) < 200 and len(set(done)) == len(done)
    assert all(s.ejections >= 1 for s in backend.replica_stats())


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("urls, message", [
    ([], r"model 'sft' has an empty base_url list — fix: list at least one replica URL"),
    (["http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/"], r"lists replica http://127.0.0.1:9/v1/ twice in base_url"),
])
def test_an_empty_or_duplicate_list_is_an_input_error(urls: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_backend(_spec(urls))


def test_an_unreachable_replica_at_start_is_named_before_any_work(replicas: tuple[FakeOpenAIServer, FakeOpenAIServer],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_backend, "_REACHED", set())  # a port an earlier test's server used counts as new here
    a, _ = replicas
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    backend = OpenAIBackend(_spec([a.base_url, dead]))
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        backend.run(_requests(10), lambda req, res: None, NullProgress())
    assert re.match(rf"replica {re.escape(dead)} of model 'sft' is unreachable at start .* — fix: remove it from "
                    r"base_url or start it$", str(err.value))
    assert time.perf_counter() - start < 5  # no retry schedule
    assert a.stats()["total_requests"] == 0  # checked before any call was sent


def test_cli_replicas_bad_input_exits_2_and_a_run_prints_one_line_per_replica(tmp_path: Path, replicas: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = replicas
    questions = write_questions(tmp_path / "questions.jsonl", 8)
    cfg = write_config(tmp_path / "evalsuite.toml", a.base_url, ["sft"], questions)
    args = ["generate", "sft", "--config", str(cfg), "--quiet", "--run-dir", "run"]

    def one_error_line(res: Any) -> str:
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("evalsuite: error:")]
        assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
        return str(errors[0])

    dup = run_cli(*args, "--set", f'models.sft.base_url=["{a.base_url}", "{a.base_url}"]', cwd=tmp_path)
    assert "twice in base_url" in one_error_line(dup)

    dead = f"http://127.0.0.1:{_free_port()}/v1"
    down = run_cli(*args, "--set", f'models.sft.base_url=["{a.base_url}", "{dead}"]', cwd=tmp_path)
    assert one_error_line(down).endswith("fix: remove it from base_url or start it") and dead in down.stderr

    ok = run_cli(*args, "--set", f'models.sft.base_url=["{a.base_url}", "{b.base_url}"]', cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    lines = [ln for ln in ok.stderr.splitlines() if ln.startswith("replica ")]
    assert [ln.split()[1] for ln in lines] == [a.base_url, b.base_url]
    counts = [int(re.search(r"(\d+) answered", ln).group(1)) for ln in lines]  # type: ignore[union-attr]
    assert sum(counts) == 16 and counts == [_ok(a), _ok(b)]


def test_compare_over_two_replicas(tmp_path: Path, replicas: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = replicas
    questions = write_questions(tmp_path / "questions.jsonl", 12)
    cfg = write_config(tmp_path / "evalsuite.toml", a.base_url, STRENGTHS, questions)
    both = f'["{a.base_url}", "{b.base_url}"]'
    sets = [f"--set=models.sft.base_url={both}", f"--set=models.dpo.base_url={both}", f"--set=judge.base_url={both}"]
    res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--quiet", "--run-dir", "run", "--resamples", "200",
                  *sets, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    planned = 2 * 12 * 2 + 12 * 2 * 2  # generation (2 models x 2 turns) + judging (2 turns x 2 orders)
    assert _ok(a) + _ok(b) == planned and min(_ok(a), _ok(b)) > planned // 4
    again = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--quiet", "--run-dir", "run", "--resamples", "200",
                    *sets, cwd=tmp_path)
    assert again.returncode == 0 and _ok(a) + _ok(b) == planned  # nothing asked again


def test_compare_goes_on_when_a_replica_is_stopped_mid_run(tmp_path: Path,
                                                           replicas: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    """A compare whose models and judge are served by two replicas; one of them stops after answering 20 calls. The
    compare finishes without an error, every call answered exactly once between the two, and a re-run asks nothing."""
    import threading

    from evalsuite import api
    from evalsuite.report.results import StatsOptions

    a, b = replicas
    questions = write_questions(tmp_path / "questions.jsonl", 12)
    cfg = write_config(tmp_path / "evalsuite.toml", a.base_url, STRENGTHS, questions)
    both = f'["{a.base_url}", "{b.base_url}"]'
    sets = [f"models.sft.base_url={both}", f"models.dpo.base_url={both}", f"judge.base_url={both}"]
    done = threading.Event()

    def stop_b() -> None:
        while not done.is_set():
            if _ok(b) >= 20:
                b.stop()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=stop_b)
    watcher.start()
    try:
        results = api.compare("sft", ["dpo"], config=cfg, run_dir=tmp_path / "run", overrides=sets,
                              stats=StatsOptions(n_resamples=200, bt_rounds=20))
    finally:
        done.set()
        watcher.join()
    planned = 2 * 12 * 2 + 12 * 2 * 2  # generation (2 models x 2 turns) + judging (2 turns x 2 orders)
    stopped_at = _ok(b)
    assert 20 <= stopped_at < planned // 2  # b really went away mid-run
    assert _ok(a) + stopped_at == planned  # nothing lost, nothing asked twice
    c = results.comparisons[0]
    assert (c.n, c.errors) == (24, 0)
    # the same list again, its dead replica included: this process reached it before, so it is taken out, not fatal
    again = api.compare("sft", ["dpo"], config=cfg, run_dir=tmp_path / "run", overrides=sets,
                        stats=StatsOptions(n_resamples=200, bt_rounds=20))
    assert _ok(a) + stopped_at == planned and again.comparisons[0].n == 24  # everything was stored: nothing asked


# ------------------------------------------------------------------------------------------- identity


def test_identity_ignores_the_replica_list() -> None:
    one = model_identity(_spec(["http://a/v1"]))
    assert one == model_identity(_spec(["http://a/v1", "http://b/v1"])) == model_identity(_spec(["http://c/v1"]))
    assert "base_url" not in one
    assert model_identity(_spec("http://a/v1")) != model_identity(_spec("http://b/v1"))  # a single URL: as before
    assert model_identity(_spec(None)) != one  # the OpenAI API itself is another endpoint


# ------------------------------------------------------------------------------------------- vLLM parallel sizes


def _vllm(tp: int = 1, **engine: Any) -> ModelSpec:
    return ModelSpec("big", backend="vllm", model="checkpoints/big", tensor_parallel_size=tp, engine=engine)


def test_vllm_parallel_sizes_must_fit_the_gpus() -> None:
    check_parallel_sizes(_vllm(1), gpus=0)  # one process: the CPU build runs it
    check_parallel_sizes(_vllm(8), gpus=8)
    check_parallel_sizes(_vllm(4, pipeline_parallel_size=2), gpus=8)
    check_parallel_sizes(_vllm(8, pipeline_parallel_size=2, distributed_executor_backend="ray"), gpus=8)  # Ray places it
    with pytest.raises(InputError, match=r"tensor_parallel_size 2, but this machine shows no GPU — fix: set tensor_parallel_size = 1"):
        check_parallel_sizes(_vllm(2), gpus=0)
    with pytest.raises(InputError, match=r"tensor_parallel_size 4 x pipeline_parallel_size 2 = 8 GPUs, but this machine shows 4"):
        check_parallel_sizes(_vllm(4, pipeline_parallel_size=2), gpus=4)
    with pytest.raises(InputError, match=r"tensor_parallel_size 8 x pipeline_parallel_size 1 = 8 GPUs"):
        check_parallel_sizes(_vllm(1, tensor_parallel_size=8), gpus=2)  # the engine table wins over the typed key
    with pytest.raises(InputError, match=r"pipeline_parallel_size = 0 .* not a whole number of at least 1"):
        check_parallel_sizes(_vllm(1, pipeline_parallel_size=0), gpus=2)


def test_vllm_backend_checks_before_the_worker_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.backends.vllm as vllm_backend

    monkeypatch.setattr(vllm_backend, "visible_gpus", lambda spec: 1)
    (tmp_path / "big").mkdir()
    spec = ModelSpec("big", backend="vllm", model=str(tmp_path / "big"), tensor_parallel_size=2)
    with pytest.raises(InputError, match=r"= 2 GPUs, but this machine shows 1"):
        make_backend(spec)


# ------------------------------------------------------------------------------------------- the docs page


def _toml_blocks() -> list[str]:
    text = (ROOT / "docs" / "scale-out.md").read_text(encoding="utf-8")
    return re.findall(r"```toml\n(.*?)```", text, re.S)


def test_every_toml_example_of_the_scale_out_page_loads(tmp_path: Path) -> None:
    blocks = _toml_blocks()
    assert len(blocks) >= 8
    kinds = set()
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block, encoding="utf-8")
        config = load_config(path)
        specs = [*config.models.values(), *([config.judge] if "[judge]" in block else [])]
        assert specs, block
        for spec in specs:
            if spec.backend == "vllm":
                check_parallel_sizes(spec, gpus=8)  # every engine example fits one node of 8 GPUs, or is Ray's
                kinds.add("vllm")
            elif isinstance(spec.base_url, list):
                assert OpenAIBackend(spec).pool is not None  # no duplicate, not empty
                kinds.add("replicas")
    assert kinds == {"vllm", "replicas"}
