"""Front ends over several replicas (planner/emit/router.py): weights, nginx, Envoy, runtime routers.

* The integer weights add up to the rounding total and follow the shares within one part in it,
  for 2 to 5 endpoints with uneven shares, in both files, for every runtime target.
* ``router-nginx.conf`` is parsed by the real nginx (``nginx -t``) when it is installed (.ci/run
  installs it; with CI=true a missing nginx fails instead of skipping). Host names are resolved
  by nginx, so the test plans' nodes are renamed ``localhost`` / ``127.0.0.1`` first.
* ``router-envoy.yaml`` is checked for structure here, and against Envoy's own API (the
  ``Bootstrap`` message of envoyproxy/data-plane-api, PyPI ``xds-protos``) when that is installed.
* The routers' command lines parse with sglang-router's and vllm-router's own argument parsers
  when those packages are installed (``pip install --no-deps sglang-router vllm-router``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import re
import shlex
import shutil
import subprocess
from fractions import Fraction
from math import gcd
from pathlib import Path

import pytest
import yaml

from planner import api
from planner.emit import emit
from planner.emit.router import FRONT_PORT, parts, weight_total, weights
from planner.plan.schema import Plan
from topologies.errors import InputError

TARGETS = ("vllm", "sglang", "trtllm")
PORTS = {"vllm": 8000, "sglang": 30000, "trtllm": 8000}
# uneven shares for 2..5 endpoints (each list sums to 1); one with a share below 1/1000
UNEVEN = {2: [0.6, 0.4], 3: [0.5, 0.3, 0.2], 4: [0.4123, 0.3001, 0.1876, 0.1], 5: [0.35, 0.25, 0.2, 0.1995, 0.0005]}


def _plan(**kw) -> Plan:
    p = api.search(**kw, time_limit_s=10.0, workers=1, seed=0)
    return Plan.model_validate(json.loads(p.to_json()))


@pytest.fixture(scope="module")
def small() -> Plan:
    """16 one-GPU replicas of llama-3.1-8b over two nodes, in one group."""
    p = _plan(topology="dgx-h100x2", model="llama-3.1-8b", disaggregation="off")
    assert len(p.replica_groups) == 1 and len(p.replica_groups[0].replicas) >= 5
    return p


@pytest.fixture(scope="module")
def wide() -> Plan:
    """32 one-GPU replicas of llama-3.1-8b over four nodes, in one group."""
    p = _plan(topology="dgx-h100x4", model="llama-3.1-8b", disaggregation="off")
    assert len(p.replica_groups) == 1 and len(p.replica_groups[0].replicas) >= 17
    return p


@pytest.fixture(scope="module")
def pools() -> Plan:
    p = _plan(topology="dgx-h100x2", model="llama-3.1-70b", isl=4096, osl=256, tpot_ms=40, runtime="sglang",
              disaggregation="only")
    assert {g.role for g in p.replica_groups} == {"prefill", "decode"}
    return p


def _split(plan: Plan, shares: list[float]) -> Plan:
    """The plan's first len(shares) replicas, each its own group g0, g1, ... with that traffic_share."""
    g = plan.replica_groups[0]
    groups = [g.model_copy(update={"id": f"g{i}", "traffic_share": s, "replicas": [r],
                                   "strategy": g.strategy.model_copy(update={"dp": 1})})
              for i, (s, r) in enumerate(zip(shares, g.replicas, strict=False))]
    return plan.model_copy(update={"replica_groups": groups})


def _mixed(pools: Plan) -> Plan:
    """The pools plan with one prefill group turned into a unified group of a quarter of the requests,
    the other prefill groups and the decode groups sharing the other three quarters."""
    pre = [g for g in pools.replica_groups if g.role == "prefill"]
    dec = [g for g in pools.replica_groups if g.role == "decode"]
    assert len(pre) >= 2, "the fixture plan has several prefill groups"
    uni = pre[0].model_copy(update={"id": "u", "role": "unified", "traffic_share": 0.25})
    rest = sum(g.traffic_share for g in pre[1:])
    pre = [g.model_copy(update={"traffic_share": 0.75 * g.traffic_share / rest}) for g in pre[1:]]
    dec = [g.model_copy(update={"traffic_share": 0.75 * g.traffic_share}) for g in dec]
    return pools.model_copy(update={"replica_groups": [*pre, *dec, uni]})


def _renamed(plan: Plan, names: dict[str, str]) -> Plan:
    groups = [g.model_copy(update={"replicas": [r.model_copy(update={"ranks": [
        k.model_copy(update={"node": names.get(k.node, k.node)}) for k in r.ranks]}) for r in g.replicas]})
        for g in plan.replica_groups]
    return plan.model_copy(update={"replica_groups": groups})


def _nginx_servers(text: str) -> list[tuple[str, int, int]]:
    return [(h, int(p), int(w)) for h, p, w in re.findall(r'^    server "([^":]+):(\d+)" weight=(\d+);', text, re.M)]


def _envoy_endpoints(text: str) -> list[tuple[str, int, int]]:
    (cluster,) = yaml.safe_load(text)["static_resources"]["clusters"]
    (locality,) = cluster["load_assignment"]["endpoints"]
    return [(e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"][
        "port_value"], e["load_balancing_weight"]) for e in locality["lb_endpoints"]]


def _close(ws: list[int], shares: list[float]) -> None:
    """Weights that are the rounded parts divided by their common divisor, parts within half a part of
    each share of weight_total(n) (a share under half a part: 1), adding up to the total within n/2,
    so that each endpoint's fraction of the requests is its share within (n + 1) / (2 x the parts' sum)
    (each raised part adds 2 / the sum)."""
    n, total = len(ws), weight_total(len(ws))
    p = parts(shares)
    assert all(isinstance(w, int) and w >= 1 for w in ws) and ws == [x // gcd(*p) for x in p]
    s = [Fraction(x) / sum(Fraction(y) for y in shares) for x in shares]
    raised = sum(1 for x in s if x * total < Fraction(1, 2))
    assert abs(sum(p) - total) <= Fraction(n, 2) + raised
    for w, x, part in zip(ws, s, p, strict=True):
        assert abs(part - x * total) <= Fraction(1, 2) or (part == 1 and x * total < Fraction(1, 2))
        assert abs(Fraction(w, sum(ws)) - x) <= Fraction(n + 1 + 4 * raised, 2 * sum(p)), (ws, shares, n)
    for i in range(n):  # equal shares, equal weights
        assert all(ws[i] == ws[j] for j in range(n) if shares[i] == shares[j])


# -- weights ---------------------------------------------------------------------------------------

def test_weights_by_hand():
    assert weights([0.25] * 4) == [1, 1, 1, 1]
    assert weights([1 / 16] * 16) == [1] * 16  # 62.5 parts each, rounded alike
    assert weights([1, 1, 1]) == [1, 1, 1]
    assert weights([0.5, 0.25, 0.25]) == [2, 1, 1]
    assert weights([0.6, 0.4]) == [3, 2]
    assert weights([0.1234, 0.8766]) == [123, 877]
    assert weights([0.0005, 0.9995]) == [1, 1000]  # halves up
    assert weights([0.0004, 0.9996]) == [1, 1000]  # below half a part: raised to 1
    assert weights([3, 1]) == weights([0.75, 0.25]) == [3, 1]  # only the proportions matter
    with pytest.raises(InputError):
        weights([0.0, 0.0])


@pytest.mark.parametrize("n", sorted(UNEVEN))
def test_weights_sum_and_follow_uneven_shares(n):
    _close(weights(UNEVEN[n]), UNEVEN[n])
    rng = random.Random(n)
    for _ in range(200):
        shares = [round(rng.uniform(0.0001, 1), 6) for _ in range(n)]
        _close(weights(shares), shares)
        shares[-1] = shares[0]  # with two equal shares
        _close(weights(shares), shares)


def test_many_endpoints_total():
    """More than 100 endpoints: 10 parts each, so small differences between endpoints still show."""
    shares = [1.0 + (i % 7) for i in range(400)]
    ws = weights(shares)
    assert weight_total(400) == 4000
    _close(ws, shares)


# -- emitted files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("n", sorted(UNEVEN))
def test_uneven_plan_weights_in_both_files(small, target, n):
    plan = _split(small, UNEVEN[n])
    files = emit(plan, target)
    servers, endpoints = _nginx_servers(files["router-nginx.conf"]), _envoy_endpoints(files["router-envoy.yaml"])
    assert servers == endpoints and len(servers) == n
    want = [(r.ranks[0].node, None) for g in plan.replica_groups for r in g.replicas]
    assert [h for h, _, _ in servers] == [h for h, _ in want]
    assert all(p >= PORTS[target] for _, p, _ in servers) and len({(h, p) for h, p, _ in servers}) == n
    _close([w for _, _, w in servers], UNEVEN[n])
    assert f"{target}-router.sh" not in files and "sglang-router.sh" not in files  # no weights in those routers


@pytest.mark.parametrize("target", TARGETS)
def test_equal_shares(small, target):
    files = emit(small, target)
    servers = _nginx_servers(files["router-nginx.conf"])
    assert len(servers) == len(small.replica_groups[0].replicas) and {w for _, _, w in servers} == {1}
    if target != "trtllm":
        router = files[f"{target}-router.sh"]
        assert "--policy round_robin" in router and f"--port {FRONT_PORT}" in router
        assert router.count("http://") == len(servers)


def test_one_replica_no_front_end(small):
    one = _split(small, [1.0])
    for target in TARGETS:
        assert not any("router" in name for name in emit(one, target))


def test_pools_keep_the_pd_router_alone(pools):
    files = emit(pools, "sglang")
    assert sorted(files) == sorted(f"sglang-{g.id}.sh" for g in pools.replica_groups) + ["sglang-router.sh"]
    assert "--pd-disaggregation" in files["sglang-router.sh"] and "--worker-urls" not in files["sglang-router.sh"]


def test_mixed_plan_balances_unified_replicas_and_the_pd_router(pools):
    files = emit(_mixed(pools), "sglang")
    servers = _nginx_servers(files["router-nginx.conf"])
    assert servers[-1][:2] == ("127.0.0.1", 8000) and "--port 8000" in files["sglang-router.sh"]
    assert "--pd-disaggregation" in files["sglang-router.sh"]
    unified = len(next(g for g in _mixed(pools).replica_groups if g.role == "unified").replicas)
    assert len(servers) == unified + 1  # the unified replicas, then the pools' PD router
    w = [w for _, _, w in servers]
    assert w[-1] / sum(w[:-1]) == pytest.approx(3, rel=0.02)  # the pools carry three quarters (integer weights)
    assert _envoy_endpoints(files["router-envoy.yaml"]) == servers


def test_capacity_when_a_group_has_no_share(small):
    plan = _split(small, [0.5, 0.3, 0.2])
    g0 = plan.replica_groups[0]
    m = g0.metrics_per_replica.model_copy(update={"requests_per_s": 3 * g0.metrics_per_replica.requests_per_s})
    plan = plan.model_copy(update={"replica_groups": [g0.model_copy(update={"traffic_share": None,
                                                                            "metrics_per_replica": m}),
                                                      *plan.replica_groups[1:]]})
    servers = _nginx_servers(emit(plan, "vllm")["router-nginx.conf"])
    assert [w for _, _, w in servers] == [3, 1, 1]


@pytest.mark.parametrize("bad", ["dgx 0", "dgx0;x", "-dgx0", "a..b", "dgx0}", 'dgx0"', "x" * 64])
def test_refuses_a_node_that_is_not_a_host_name(small, bad):
    plan = _renamed(_split(small, [0.5, 0.5]), {small.replica_groups[0].replicas[0].ranks[0].node: bad})
    for target in TARGETS:
        with pytest.raises(InputError, match=r"replica_groups\.g0\.replicas\.\d+\.ranks\.0\.node: node name .* host"):
            emit(plan, target)


def test_refuses_a_group_named_like_the_router(small):
    plan = _split(small, [0.5, 0.5])
    plan = plan.model_copy(update={"replica_groups": [plan.replica_groups[0].model_copy(update={"id": "router"}),
                                                      plan.replica_groups[1]]})
    with pytest.raises(InputError, match="router"):
        emit(plan, "vllm")


def test_front_end_files_are_deterministic(small, pools):
    for plan in (_split(small, UNEVEN[5]), _mixed(pools)):
        for target in ("sglang",) if plan.replica_groups[0].role != "unified" else TARGETS:
            assert emit(plan, target) == emit(plan, target)


# -- nginx ---------------------------------------------------------------------------------------

def _need_nginx() -> str:
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (apt-get install nginx); CI must run this test")
        pytest.skip("nginx is not installed")
    return path


def nginx_test(conf: str, d) -> subprocess.CompletedProcess:
    """``nginx -t`` on ``conf`` included in http {} of a minimal main file, as conf.d/ files are."""
    nginx = _need_nginx()
    (d / "logs").mkdir(parents=True, exist_ok=True)
    (d / "site.conf").write_text(conf, encoding="utf-8")
    (d / "main.conf").write_text(f"pid {d}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                                 f"http {{\n  access_log off;\n  include {d}/site.conf;\n}}\n", encoding="utf-8")
    return subprocess.run([nginx, "-t", "-q", "-p", str(d), "-c", str(d / "main.conf")], capture_output=True,
                          text=True, timeout=60)


def _local(plan: Plan) -> Plan:
    nodes = sorted({k.node for g in plan.replica_groups for r in g.replicas for k in r.ranks})
    return _renamed(plan, dict(zip(nodes, ["localhost", "127.0.0.1"], strict=False)))


@pytest.mark.parametrize("target", TARGETS)
def test_nginx_accepts_the_conf(small, pools, target, tmp_path):
    _need_nginx()
    cases = {f"uneven{n}": _split(small, UNEVEN[n]) for n in (2, 5)} | {"equal": small}
    if target == "sglang":
        cases["mixed"] = _mixed(pools)
    for name, plan in cases.items():
        r = nginx_test(emit(_local(plan), target)["router-nginx.conf"], tmp_path / name)
        assert r.returncode == 0, (name, r.stderr)


def test_nginx_test_can_fail(small, tmp_path):
    """The check above fails on a broken file and on a host nginx cannot resolve (the plan's own names)."""
    conf = emit(_local(_split(small, UNEVEN[3])), "vllm")["router-nginx.conf"]
    assert nginx_test(conf.replace(" weight=", " wieght="), tmp_path / "a").returncode != 0
    assert nginx_test(conf.replace("keepalive 32;", "keepalive 32"), tmp_path / "b").returncode != 0
    r = nginx_test(emit(_split(small, UNEVEN[3]), "vllm")["router-nginx.conf"], tmp_path / "c")
    assert r.returncode != 0 and "host not found" in r.stderr


# -- Envoy ---------------------------------------------------------------------------------------

def _bootstrap_checks(doc: dict) -> None:
    """What Envoy requires of the parts we write (config.endpoint.v3.LbEndpoint weight >= 1, a
    STRICT_DNS cluster for host names, the route's cluster defined)."""
    res = doc["static_resources"]
    (listener,) = res["listeners"]
    (cluster,) = res["clusters"]
    assert listener["address"]["socket_address"]["port_value"] == FRONT_PORT
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    (vhost,) = hcm["typed_config"]["route_config"]["virtual_hosts"]
    assert vhost["routes"][0]["route"]["cluster"] == cluster["name"] == cluster["load_assignment"]["cluster_name"]
    assert cluster["type"] == "STRICT_DNS" and cluster["lb_policy"] == "ROUND_ROBIN"
    ws = [e["load_balancing_weight"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert all(isinstance(w, int) and w >= 1 for w in ws) and sum(ws) < 2 ** 32


def _envoy_cases(small, pools):
    for n in sorted(UNEVEN):
        for target in TARGETS:
            yield emit(_split(small, UNEVEN[n]), target)["router-envoy.yaml"]
    yield emit(_mixed(pools), "sglang")["router-envoy.yaml"]


def test_envoy_structure(small, pools):
    for text in _envoy_cases(small, pools):
        _bootstrap_checks(yaml.safe_load(text))


def test_envoy_bootstrap_against_envoy_api(small, pools):
    pytest.importorskip("envoy.config.bootstrap.v3.bootstrap_pb2")
    from google.protobuf import json_format

    bootstrap_pb2 = importlib.import_module("envoy.config.bootstrap.v3.bootstrap_pb2")
    for mod in ("envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
                "envoy.extensions.filters.http.router.v3.router_pb2"):  # register the typed_config types
        importlib.import_module(mod)
    for text in _envoy_cases(small, pools):
        msg = json_format.ParseDict(yaml.safe_load(text), bootstrap_pb2.Bootstrap())
        cluster = msg.static_resources.clusters[0]
        assert [e.load_balancing_weight.value for e in cluster.load_assignment.endpoints[0].lb_endpoints] == [
            w for _, _, w in _envoy_endpoints(text)]
    with pytest.raises(json_format.ParseError):  # the check can fail: a misspelled field
        json_format.ParseDict(yaml.safe_load(text.replace("load_balancing_weight", "load_balance_weight")),
                              bootstrap_pb2.Bootstrap())


# -- the runtimes' routers -------------------------------------------------------------------------

def _argv(script: str) -> list[str]:
    body = script.split("set -euo pipefail\n", 1)[1]
    return shlex.split(body.replace("\\\n", " "), comments=True)


def _router_args(package: str, argv: list[str]):
    ra = pytest.importorskip(f"{package}.router_args")
    parser = argparse.ArgumentParser(exit_on_error=False)
    ra.RouterArgs.add_cli_args(parser, use_router_prefix=False)
    return ra.RouterArgs.from_cli_args(parser.parse_args(argv), use_router_prefix=False)


@pytest.mark.parametrize("target,package,program", [("sglang", "sglang_router", ["python", "-m",
                                                                                  "sglang_router.launch_router"]),
                                                     ("vllm", "vllm_router", ["vllm-router"])])
def test_router_flags_parse(small, pools, target, package, program):
    argv = _argv(emit(small, target)[f"{target}-router.sh"])
    assert argv[:len(program)] == program
    args = _router_args(package, argv[len(program):])
    assert args.policy == "round_robin" and args.port == FRONT_PORT and len(args.worker_urls) == len(
        small.replica_groups[0].replicas)
    if target == "sglang":
        pd = _router_args(package, _argv(emit(_mixed(pools), "sglang")["sglang-router.sh"])[3:])
        assert pd.pd_disaggregation and pd.prefill_urls and pd.decode_urls


def test_k8s_routes_traffic_across_groups_by_share(small):
    """Kubernetes: each group's Service spreads its requests evenly over its replicas; across groups a
    Gateway API HTTPRoute weights the Services by traffic_share, with the load balancers' weights."""
    import yaml as _yaml

    plan = _split(small, [0.5, 0.3, 0.2])
    files = emit(plan, "k8s")
    (route,) = [d for d in _yaml.safe_load_all(files["k8s-route.yaml"]) if d]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [r["name"] for r in refs] == ["vllm-g0", "vllm-g1", "vllm-g2"]
    assert [r["weight"] for r in refs] == [5, 3, 2]
    services = {d["metadata"]["name"] for name, text in files.items() if name != "k8s-route.yaml"
                for d in _yaml.safe_load_all(text) if d and d["kind"] == "Service"}
    assert {r["name"] for r in refs} <= services
    assert "k8s-route.yaml" not in emit(small, "k8s")  # one group: its Service is the whole split


def _httproute_errors(doc) -> list[str]:
    """``doc`` against the HTTPRoute schema check_emitters.py judges routes with (written from the
    Gateway API v1 types: benchmarks/emitcheck_k8s.py)."""
    import sys

    import jsonschema

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from emitcheck_k8s import HTTPROUTE_SCHEMA
    finally:
        sys.path.pop(0)
    return [e.message for e in jsonschema.Draft202012Validator(HTTPROUTE_SCHEMA).iter_errors(doc)]


@pytest.mark.parametrize("n", [2, 16])
def test_k8s_route_passes_the_gateway_api_schema(small, n):
    """The route of 2 and of 16 groups (the most one HTTPRoute rule takes) meets the HTTPRoute schema:
    Service backends with ports, integer weights within 0-1,000,000, at most 16 of them."""
    (route,) = [d for d in yaml.safe_load_all(emit(_split(small, [1 / n] * n), "k8s")["k8s-route.yaml"]) if d]
    assert _httproute_errors(route) == []
    # the schema bites: a Service backend without its port, a weight past the limit, a 17th backend
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert _httproute_errors({**route, "spec": {**route["spec"], "rules": [{"backendRefs": [
        {k: v for k, v in refs[0].items() if k != "port"}]}]}}) == ["'port' is a required property"]
    assert any("1000001" in e for e in _httproute_errors({**route, "spec": {**route["spec"], "rules": [
        {"backendRefs": [{**refs[0], "weight": 1_000_001}]}]}}))
    assert _httproute_errors({**route, "spec": {**route["spec"], "rules": [{"backendRefs": refs * 17}]}})


def test_k8s_refuses_more_groups_than_an_httproute_weights(wide):
    """17 unified groups cannot be weighted by one HTTPRoute rule (at most 16 backendRefs): the k8s
    target refuses in one line and names the target whose front end takes any number."""
    with pytest.raises(InputError) as e:
        emit(_split(wide, [1 / 17] * 17), "k8s")
    assert "at most 16" in str(e.value) and "--target vllm" in str(e.value)


def test_k8s_refuses_a_group_named_like_the_route_file(small):
    plan = _split(small, [0.5, 0.5])
    plan = plan.model_copy(update={"replica_groups": [plan.replica_groups[0].model_copy(update={"id": "route"}),
                                                      plan.replica_groups[1]]})
    with pytest.raises(InputError) as e:
        emit(plan, "k8s")
    assert "k8s-route.yaml" in str(e.value)
