"""Front ends that split a plan's requests over its replicas by ``traffic_share``.

A plan of several serving endpoints (unified replicas, and the PD router of a plan that also has
prefill/decode pools) needs one address in front of them that sends each endpoint its share of the
requests. ``traffic_share`` is a group's share, split evenly over its replicas (planner/plan/schema.py).
The runtime emitters (vllm, sglang, trtllm) add, whenever there is more than one endpoint:

* ``router-nginx.conf``: an nginx ``upstream`` of the endpoints with ``weight=`` (nginx's default
  upstream method is weighted round robin: nginx docs, ngx_http_upstream_module, "server ...
  weight=number"), and a ``server`` listening on ``FRONT_PORT`` that proxies to it. It is an
  http-context file, for /etc/nginx/conf.d/ (Debian's and the nginx image's nginx.conf include
  ``conf.d/*.conf`` inside ``http {}``). nginx resolves the host names when it loads the file.
* ``router-envoy.yaml``: an Envoy bootstrap (static listener on ``FRONT_PORT``, one STRICT_DNS
  cluster, ``lb_policy: ROUND_ROBIN``, each endpoint's ``load_balancing_weight``; Envoy docs
  "Supported load balancers": round robin is weighted when endpoints carry weights;
  config.endpoint.v3.LbEndpoint: load_balancing_weight >= 1). The route's ``timeout: 0s`` turns off
  Envoy's 15 s default, which would cut long generations. Written with a YAML dumper.
* the runtime's own router, when it can honour the shares. SGLang's ``sglang-router`` (0.3.2,
  sglang_router/router_args.py) and vLLM's ``vllm-router`` (vllm-project/router, PyPI vllm-router
  0.1.17, vllm_router/router_args.py) take ``--worker-urls`` and a ``--policy`` of random,
  round_robin, cache_aware, power_of_two, manual (SGLang) or also kv_aware, consistent_hash,
  sticky_least_loaded (vLLM): none weighs workers. So their script (``round_robin``) is written
  only when every endpoint has the same share, where round robin gives each exactly its share;
  otherwise nginx or Envoy does the split. TensorRT-LLM's serve command has no router for
  unified replicas.

Weights (``weights``): each endpoint's share of ``weight_total(n)`` (1,000, or 10 per endpoint when
there are more than 100), rounded to the nearest whole (halves up) and at least 1, then all divided
by their greatest common divisor. Endpoints of equal share (the replicas of one group) get equal
weights, and equal shares give weight 1 each; the parts add up to the total within n/2, so each
endpoint's fraction of the requests is its share within (n + 1) / (2 x the parts' sum) (a share
under half a part is raised to one). Same shares, same weights: the rounding is exact arithmetic
on the shares' float values.

Every host written is a plan node name held to host-name syntax (``HOST``) and every port an
integer 1..65535, else :class:`InputError` naming the field; nginx words are also double-quoted,
and any other plan text reaches these files only in ``#`` comments through ``safe_text``.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import floor, gcd

from planner.emit import ReplicaLayout
from planner.emit.shell import continued, safe_text, sh_comment
from planner.emit.yaml_text import yaml_dump
from planner.plan.schema import Plan
from topologies.errors import InputError

FRONT_PORT = 8080  # where nginx, Envoy and the runtime routers listen (a machine that reaches the replicas)
WEIGHT_TOTAL = 1000
UPSTREAM = "plan_replicas"
NGINX_FILE = "router-nginx.conf"
ENVOY_FILE = "router-envoy.yaml"
# RFC 1123 host-name labels (plus '_', which /etc/hosts names may carry), dot-separated, at most 253 characters
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


@dataclass(frozen=True)
class Endpoint:
    """One address the front end sends requests to, and its share of them."""
    host: str
    port: int
    share: float
    note: str    # what it is, for a comment (plan text: written through safe_text only)
    field: str   # the plan field the host comes from, for refusals


def replica_endpoints(plan: Plan, rows: dict[str, list[ReplicaLayout]],
                      port_of: Callable[[str, int], int] | None = None) -> list[Endpoint]:
    """The unified replicas' HTTP endpoints (first node, port) with their share of the requests:
    the group's ``traffic_share`` over its replicas, or, when a group has none (a hand-written
    plan), every replica's planned requests per second (what traffic_share is computed from).
    ``port_of(group id, replica index)`` gives the port where the emitter chose it itself (SGLang
    allocates ports per node); else the layout's port."""
    groups = [g for g in plan.replica_groups if g.role == "unified"]
    by_capacity = any(g.traffic_share is None for g in plan.replica_groups)
    out = []
    for g in groups:
        share = g.metrics_per_replica.requests_per_s if by_capacity else g.traffic_share / len(g.replicas)
        for row in rows[g.id]:
            field = f"replica_groups.{g.id}.replicas.{row.replica.index}.ranks.0.node"
            port = row.port if port_of is None else port_of(g.id, row.replica.index)
            out.append(Endpoint(row.head, port, share, f"{g.id} replica {row.replica.index}", field))
    return out


def pools_share(plan: Plan) -> float:
    """The share of requests of the prefill/decode pools as one endpoint (their PD router): the
    prefill groups' traffic_share (each request uses one prefill and one decode server), or their
    capacity in requests per second when a group has no traffic_share."""
    if any(g.traffic_share is None for g in plan.replica_groups):
        cap = {role: sum(g.metrics_per_replica.requests_per_s * len(g.replicas) for g in plan.replica_groups
                         if g.role == role) for role in ("prefill", "decode")}
        return min(cap.values())
    return sum(g.traffic_share for g in plan.replica_groups if g.role == "prefill")


def weight_total(n: int) -> int:
    """The sum the integer weights of ``n`` endpoints round to (see the module docstring)."""
    return max(WEIGHT_TOTAL, 10 * n)


def parts(shares: list[float], field: str = "replica_groups") -> list[int]:
    """Each share of ``weight_total(n)``, rounded to the nearest whole (halves up), at least 1: equal
    shares get equal parts, and the parts add up to the total within n/2 (plus one per raised part)."""
    exact = [Fraction(s) for s in shares]
    if not exact or any(s < 0 for s in exact) or sum(exact) <= 0:
        raise InputError("the replicas' traffic shares must be 0 or more and not all 0", field=field)
    total = weight_total(len(exact))
    return [max(1, floor(s * total / sum(exact) + Fraction(1, 2))) for s in exact]


def weights(shares: list[float], field: str = "replica_groups") -> list[int]:
    """Integer weights proportional to ``shares``: their :func:`parts` divided by the parts' greatest
    common divisor (equal shares: 1 each)."""
    p = parts(shares, field)
    d = gcd(*p)
    return [x // d for x in p]


def ends_in_number(host: str) -> bool:
    """Whether URL parsers and the C resolver read ``host`` as an IPv4 address: its last label all
    digits or ``0x`` hex (the WHATWG URL standard's "ends in a number" check; glibc's inet_aton takes
    ``1`` as 0.0.0.1), unless it is a dotted-quad address already.

    >>> [ends_in_number(h) for h in ("dgx0", "1", "h.0", "node.0x1f", "10.0.0.7", "08")]
    [False, True, True, True, False, True]
    """
    last = host.rsplit(".", 1)[-1]
    if not (last.isdigit() or re.fullmatch(r"0[xX][0-9A-Fa-f]*", last)):
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


def check_host(name: str, field: str, use: str) -> str:
    """``name``, refused when ``use`` (what reaches it: a URL, ``ray start --address``, ``mpirun -H``) would
    take it for an IPv4 address rather than look it up (:func:`ends_in_number`)."""
    if ends_in_number(name):
        raise InputError(f"node name {name!r} ends in a number, so {use} would read it as an IPv4 address, not look "
                         "it up; give the node a name whose last label holds a letter", field=field)
    return name


def safe_host(ep: Endpoint) -> str:
    """The endpoint's host name, refused unless it is plain host-name syntax naming a host rather than
    an address; its port checked too."""
    if not isinstance(ep.host, str) or not HOST.fullmatch(ep.host):
        raise InputError(f"node name {safe_text(repr(ep.host))} is not a host name the load balancer can reach "
                         "(letters, digits, '-' and '_' in dot-separated labels)", field=ep.field)
    check_host(ep.host, ep.field, "the load balancer and the routers")
    if not isinstance(ep.port, int) or isinstance(ep.port, bool) or not 1 <= ep.port <= 65535:
        raise InputError(f"port {ep.port!r} is not a TCP port (1 to 65535)", field=ep.field)
    return ep.host


def _header(plan: Plan, what: str, target: str, n: int) -> list[str]:
    return [sh_comment(f"{what} for the plan of {plan.inputs.model.name} on {plan.inputs.topology.name}: "
                       f"{n} endpoints, requests split by the plan's traffic_share"),
            sh_comment(f"generated by {plan.generator} `plan-search emit --target {target}`"),
            sh_comment(f"weights: each share of {weight_total(n)} rounded (halves up, at least 1), divided by "
                       "their common divisor (planner/emit/router.py)")]


def nginx_conf(plan: Plan, eps: list[Endpoint], target: str) -> str:
    """``router-nginx.conf``: the weighted upstream and the server in front of it (see the module docstring)."""
    ws = weights([e.share for e in eps])
    total = sum(ws)
    lines = _header(plan, "nginx load balancer", target, len(eps)) + [
        "# http-context file: put it in /etc/nginx/conf.d/, then `nginx -t && nginx -s reload`",
        f"upstream {UPSTREAM} {{"]
    for e, w in zip(eps, ws, strict=True):
        lines.append(f'    server "{safe_host(e)}:{e.port:d}" weight={w:d};  '
                     + sh_comment(f"{e.note}: {100 * w / total:.2f} % of requests"))
    lines += ["    keepalive 32;",
              "}",
              "server {",
              f"    listen {FRONT_PORT:d};",
              "    location / {",
              f"        proxy_pass http://{UPSTREAM};",
              "        proxy_http_version 1.1;",
              '        proxy_set_header Connection "";',
              "        proxy_buffering off;  # pass streamed tokens on as they come",
              "        proxy_read_timeout 3600s;  # a generation that is not streamed sends nothing until it ends",
              "        proxy_send_timeout 3600s;",
              "    }",
              "}"]
    return "\n".join(lines) + "\n"


def envoy_bootstrap(eps: list[Endpoint]) -> dict:
    """The Envoy bootstrap document of ``router-envoy.yaml`` (see the module docstring)."""
    ws = weights([e.share for e in eps])
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    lb_endpoints = [{"endpoint": {"address": {"socket_address": {"address": safe_host(e), "port_value": e.port}}},
                     "load_balancing_weight": w} for e, w in zip(eps, ws, strict=True)]
    listener = {
        "name": "plan_front",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": FRONT_PORT}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": hcm,
                "stat_prefix": "plan_front",
                "route_config": {"name": "plan_routes", "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": UPSTREAM, "timeout": "0s"}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}
    cluster = {"name": UPSTREAM, "type": "STRICT_DNS", "lb_policy": "ROUND_ROBIN", "connect_timeout": "5s",
               "load_assignment": {"cluster_name": UPSTREAM, "endpoints": [{"lb_endpoints": lb_endpoints}]}}
    return {"static_resources": {"listeners": [listener], "clusters": [cluster]}}


def envoy_yaml(plan: Plan, eps: list[Endpoint], target: str) -> str:
    """``router-envoy.yaml``: comment lines, then the bootstrap through a YAML dumper."""
    ws = weights([e.share for e in eps])
    notes = [sh_comment(f"endpoint {i}: {e.note}, weight {w}") for i, (e, w) in enumerate(zip(eps, ws, strict=True))]
    head = _header(plan, "Envoy load balancer", target, len(eps)) + ["# run: envoy -c router-envoy.yaml"] + notes
    body = yaml_dump(envoy_bootstrap(eps))
    return "\n".join(head) + "\n" + body


def equal_shares(eps: list[Endpoint]) -> bool:
    """Whether round robin gives every endpoint its share (all integer weights equal)."""
    return len(set(weights([e.share for e in eps]))) == 1


def worker_router_script(plan: Plan, eps: list[Endpoint], program: tuple, title: str, target: str) -> str:
    """A runtime router over the endpoints with round robin (only for equal shares: see the module docstring)."""
    if not equal_shares(eps):
        raise ValueError("round robin does not honour unequal shares")
    urls = tuple(f"http://{safe_host(e)}:{e.port:d}" for e in eps)
    cmd: list[tuple] = [program, ("--worker-urls", *urls), ("--policy", "round_robin"),
                        ("--host", "0.0.0.0"), ("--port", FRONT_PORT)]
    lines = ["#!/usr/bin/env bash",
             sh_comment(f"{title} for the plan of {plan.inputs.model.name}: round robin over its {len(eps)} "
                        "replicas, whose traffic_share is equal"),
             sh_comment(f"generated by {plan.generator} `plan-search emit --target {target}`; or use "
                        f"{NGINX_FILE} / {ENVOY_FILE}"),
             "# run it once, on a machine that reaches the replicas",
             "set -euo pipefail"]
    return "\n".join(lines + continued(cmd, indent="")) + "\n"


def front_files(plan: Plan, eps: list[Endpoint], target: str) -> dict[str, str]:
    """nginx and Envoy configs over ``eps`` when there is more than one endpoint, else nothing."""
    if len(eps) < 2:
        return {}
    return {NGINX_FILE: nginx_conf(plan, eps, target), ENVOY_FILE: envoy_yaml(plan, eps, target)}


def add_file(files: dict[str, str], name: str, text: str) -> None:
    """Add a front-end file, refusing a group whose launch file has the same name (group id ``router``)."""
    if name in files:
        raise InputError(f"a replica group's launch file would be named {name}, as the router's is; rename the "
                         "group", field="replica_groups")
    files[name] = text
