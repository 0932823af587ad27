"""Human-readable text for plans, evaluations and explanations (no I/O)."""
from __future__ import annotations

from tabulate import tabulate

from costmodels.calibration import ONLINE_REQUEST_OVERHEAD_S
from costmodels.units import round_up
from planner.cli.group import plural
from planner.plan.schema import Plan

GIB = 2**30


def up(ms: float, places: int) -> str:
    """A plan's latency as printed: rounded up, as plans round them, so a limit set at the printed
    figure (``--ttft-ms 446.8``) keeps the plan; to nearest, 446.7 was below the plan's 446.73."""
    return f"{round_up(ms, places):.{places}f}"


def _gib(x: float) -> str:
    return f"{x / GIB:.1f}"


def _bw(bytes_per_s: float) -> str:
    return "-" if not bytes_per_s else f"{bytes_per_s / 1e9:.1f} GB/s"


def _link_text(name: str, link, degree: int) -> str:
    """``TP link nvlink 450.0 GB/s``; a degree of 1 sends nothing, so it says so instead of a link."""
    if link.kind == "local":
        return f"no {name} traffic ({name.lower()}={degree})"
    return f"{name} link {link.kind} {_bw(link.bandwidth_bytes_per_s)}"


def _ranks_line(ranks) -> str:
    """Compress a replica's ranks to 'node[gpus] | node[gpus]' per stage."""
    by_stage: dict[int, dict[str, list[int]]] = {}
    for r in ranks:
        by_stage.setdefault(r.stage, {}).setdefault(r.node, []).append(r.gpu_index)
    parts = []
    for s in sorted(by_stage):
        nodes = ", ".join(f"{n}[{','.join(map(str, sorted(g)))}]" for n, g in by_stage[s].items())
        parts.append(nodes)
    return " -> ".join(parts)


def plan_text(plan: Plan, *, max_replicas_shown: int = 8) -> str:
    """The plan as a person reads it: the request, the groups, memory per GPU, each group's links
    and ranks, the totals and the solver's record."""
    i = plan.inputs
    slo = ", ".join(f"{k} <= {v:g}" for k, v in (("TTFT ms", i.slo.ttft_ms), ("TPOT ms", i.slo.tpot_ms),
                                                             ("TTFT p99 ms", i.slo.ttft_p99_ms),
                                                             ("TPOT p99 ms", i.slo.tpot_p99_ms)) if v) or "none"
    lines = [
        f"plan-search: {i.model.name} on {i.topology.name} "
        f"({i.topology.gpus_available}/{i.topology.gpus_total} GPUs free)",
        f"workload: isl={i.workload.isl} osl={i.workload.osl}"
        + (f" qps={i.workload.qps:g}" if i.workload.qps else "")
        + f"  SLOs: {slo}  objective: {i.objective}  weights {i.weight_dtype}, KV {i.kv_dtype}",
        "",
    ]
    lines += _groups_table(plan)
    lines += _memory_table(plan)
    lines += _links_and_ranks(plan, max_replicas_shown)
    t = plan.totals
    headroom = ""
    if t.capacity_output_tokens_per_s:
        headroom = (f" at {t.output_tokens_per_s / t.capacity_output_tokens_per_s:.0%} of capacity "
                    f"({t.capacity_output_tokens_per_s:,.0f}; the rest is headroom for queueing)")
    # the TTFTs are at the load the plan's throughput counts (queueing included); say the unloaded one too
    unloaded = max((g.metrics_per_replica.ttft_unloaded_ms for g in plan.replica_groups
                    if g.role != "decode" and g.metrics_per_replica.ttft_unloaded_ms is not None), default=None)
    load = f"at {i.workload.qps:g} req/s" if i.workload.qps else "at that load"
    idle = f" {load} ({up(unloaded, 1)} ms unloaded)" if unloaded is not None and unloaded < t.ttft_ms else ""
    lines += ["", f"total: {plural(t.gpus_used, 'GPU')}, {t.output_tokens_per_s:,.0f} output tok/s "
                  f"({t.output_tokens_per_s_per_gpu:,.0f} per GPU), {t.requests_per_s:.2f} req/s{headroom}; "
                  f"worst TTFT {up(t.ttft_ms, 1)} ms{idle}, TPOT {up(t.tpot_ms, 2)} ms"
                  + (f"; ${t.cost_per_hour:,.2f} per hour" if t.cost_per_hour is not None else "")]
    lines += [f"warning: {w}" for w in plan.warnings]
    hint = _no_slo_hint(i.slo, i.objective)
    if hint:
        lines.append(hint)
    if plan.disaggregation is not None:
        d = plan.disaggregation
        lines.append(f"prefill/decode pools: {d.decision}: {d.reason}")
    sv = plan.solver
    timing = f", {sv.wall_time_s:.2f} s" if sv.wall_time_s is not None else ""
    lines.append(f"solver: CP-SAT {sv.status} ({sv.objective} = {sv.objective_value:,.2f}, bound "
                 f"{sv.best_bound:,.2f}, gap {sv.gap:.2%}), {sv.candidates_priced} candidates priced{timing}")
    return "\n".join(lines) + "\n"




def _groups_table(plan: Plan) -> list[str]:
    """One row per replica group: shape, batch, TTFT, TPOT, throughput and traffic share."""
    lines = []
    rows = []
    # attention data parallelism gets a column only in plans that use it
    adp = any(g.strategy.attention_dp > 1 for g in plan.replica_groups)
    for g in plan.replica_groups:
        s, m = g.strategy, g.metrics_per_replica
        decode, prefill = g.role == "decode", g.role == "prefill"
        rows.append([g.id, g.role, g.gpu_label, s.tp, s.pp, s.dp, s.ep, *([s.attention_dp] if adp else []),
                     s.batch_size,
                     "-" if decode else up(m.ttft_ms, 1), "-" if prefill else up(m.tpot_ms, 2),
                     "-" if prefill else f"{m.output_tokens_per_s:,.0f}", f"{m.requests_per_s:.2f}",
                     f"{g.traffic_share:.1%}" if g.traffic_share is not None else "-"])
    lines.append(tabulate(rows, headers=["group", "role", "GPU", "tp", "pp", "dp", "ep",
                                         *(["attn-dp"] if adp else []), "batch", "TTFT ms",
                                         "TPOT ms", "tok/s/replica", "req/s/replica", "traffic"],
                          tablefmt="simple", disable_numparse=True))
    if adp:
        lines.append("attn-dp: attention data-parallel groups per replica (attention tp = tp / attn-dp), the "
                     "experts spread over all tp GPUs")
    if any(g.role == "prefill" for g in plan.replica_groups):
        lines.append("prefill groups' TTFT includes sending the KV cache to the decode pool: "
                     + ", ".join(f"{g.id} {g.metrics_per_replica.kv_transfer_ms:.1f} ms over {g.links['kv'].kind}"
                                 for g in plan.replica_groups if g.role == "prefill" and "kv" in g.links))
    lines.append("")
    return lines


def _memory_table(plan: Plan) -> list[str]:
    """Memory per GPU of each group's most loaded GPU."""
    lines = []
    mem_rows = []
    for g in plan.replica_groups:
        mm = g.memory_per_gpu_bytes
        mem_rows.append([g.id, _gib(mm.weights), _gib(mm.kv_cache), _gib(mm.activations), _gib(mm.overhead),
                         _gib(mm.reserve), _gib(mm.total), _gib(mm.capacity)])
    lines.append("memory per GPU (GiB, most loaded GPU of a replica):")
    lines.append(tabulate(mem_rows, headers=["group", "weights", "KV cache", "activations", "overhead", "reserve",
                                             "total", "capacity"], tablefmt="simple"))
    lines.append("")
    return lines


def _links_and_ranks(plan: Plan, max_replicas_shown: int) -> list[str]:
    """Each group's layer split and links, then where each replica's ranks sit."""
    lines = []
    for g in plan.replica_groups:
        lk = g.links
        line = (f"{g.id}: layers per stage {g.strategy.layer_split}; {_link_text('TP', lk['tp'], g.strategy.tp)}, "
                f"{_link_text('PP', lk['pp'], g.strategy.pp)}")
        if "ep" in lk:
            line += f", EP all-to-all {lk['ep'].kind} {_bw(lk['ep'].bandwidth_bytes_per_s)}"
            if "ep_local" in lk:
                line += f" (inside a domain {lk['ep_local'].kind} {_bw(lk['ep_local'].bandwidth_bytes_per_s)})"
        lines.append(line)
        for r in g.replicas[:max_replicas_shown]:
            lines.append(f"  replica {r.index}: {_ranks_line(r.ranks)}")
        if len(g.replicas) > max_replicas_shown:
            lines.append(f"  ... {len(g.replicas) - max_replicas_shown} more replicas (see --json)")
    return lines


def _no_slo_hint(slo, objective: str) -> str | None:
    """Once per report, when TPOT has no limit: its figure (often 100-300 ms at the largest batch)
    is whatever the objective left it, and the flag that caps it. TTFT is named too when it has
    no limit either; a TTFT-only gap gets no line, since TTFT stays near one prompt's time."""
    if slo.tpot_ms or slo.tpot_p99_ms:
        return None
    if slo.ttft_ms or slo.ttft_p99_ms:
        return f"no TPOT limit was given: the TPOT above is what objective {objective} leaves it; --tpot-ms sets one"
    return (f"no TPOT or TTFT limit was given: the TPOT and TTFT above are what objective {objective} leaves "
            f"them; --tpot-ms and --ttft-ms set limits")


def evaluation_text(d: dict) -> str:
    mm = d["memory_per_gpu_bytes"]
    fit = "fits" if d["fits"] else f"does NOT fit: {d['reason']}"
    lines = [
        f"{d['gpu']} tp={d['tp']} pp={d['pp']} dp={d['dp']} ep={d['ep']}"
        + (f" attention_dp={d['attention_dp']}" if d.get("attention_dp", 1) > 1 else "") + " "
        f"(weights {d['weight_dtype']}, KV {d['kv_dtype']}): {fit}",
        f"memory per GPU: weights {_gib(mm['weights'])} GiB, KV cache {_gib(mm['kv_cache'])} GiB, activations "
        f"{_gib(mm['activations'])} GiB, overhead {_gib(mm['overhead'])} GiB, reserve {_gib(mm['reserve'])} GiB; "
        f"total {_gib(mm['total'])} of {_gib(mm['capacity'])} GiB",
        f"batch {d['batch_size']} (largest that fits: {d['max_batch_size']})",
    ]
    if d["tpot_ms"] is not None:
        lines.append(f"TTFT {d['ttft_ms']:.1f} ms, TPOT {d['tpot_ms']:.2f} ms, {d['output_tokens_per_s']:,.0f} "
                     f"output tok/s ({d['output_tokens_per_s_per_gpu']:,.0f} per GPU), {d['requests_per_s']:.2f} req/s")
    lines += _loaded_lines(d)
    return "\n".join(lines) + "\n"


def top_k_text(plans: list[Plan], why: list[str | None]) -> str:
    """The best plan in full, then the ranking with why each later plan ranks below it."""
    from planner.frontier import shapes

    rows = []
    for i, (p, w) in enumerate(zip(plans, why, strict=True), start=1):
        t = p.totals
        rows.append([i, f"{t.output_tokens_per_s:,.0f}", f"{t.output_tokens_per_s_per_gpu:,.0f}", t.gpus_used,
                     f"{t.cost_per_hour:,.2f}" if t.cost_per_hour is not None else "-",
                     up(t.tpot_ms, 1), up(t.ttft_ms, 1), shapes(p), w or "best"])
    table = tabulate(rows, headers=["#", "tok/s", "tok/s/GPU", "GPUs", "$/h", "TPOT ms", "TTFT ms", "replicas",
                                    "why below #1"], tablefmt="simple", disable_numparse=True)
    note = "" if len(plans) > 1 else "\n(only one distinct mix of replica shapes meets the request)\n"
    return plan_text(plans[0]) + f"\ntop {plural(len(plans), 'plan')} by {plans[0].solver.objective}:\n" + table + "\n" + note


def frontier_text(front) -> str:
    """The frontier as a table, fastest first; the chosen plan marked with *."""
    from planner.frontier import shapes

    axis = "TPOT" if front.axis == "tpot" else "TTFT"
    rows = []
    for i, p in enumerate(front.plans):
        t, slo = p.totals, p.inputs.slo
        step = slo.tpot_ms if front.axis == "tpot" else slo.ttft_ms
        rows.append(["*" if i == front.chosen else "", i, f"{t.output_tokens_per_s_per_gpu:,.0f}", f"{t.output_tokens_per_s:,.0f}", t.gpus_used,
                     up(t.tpot_ms, 1), up(t.ttft_ms, 1), f"{step:g}" if step else "-", shapes(p)])
    head = front.plans[front.chosen].inputs
    lines = [f"plan-search frontier: {head.model.name} on {head.topology.name}, isl={head.workload.isl} "
             f"osl={head.workload.osl}; tokens/s per GPU against {axis}",
             tabulate(rows, headers=["", "#", "tok/s/GPU", "tok/s", "GPUs", "TPOT ms", "TTFT ms",
                                     f"{axis} SLO step", "replicas"], tablefmt="simple", disable_numparse=True),
             f"* the plan for objective {head.objective}"
             + (" (dominated by another plan here, kept for reference)" if front.chosen_dominated else "")
             + f"; {plural(len(front.plans), 'non-dominated plan')} (--json prints each in full)"]
    if front.time_limit_reached:
        limit = front.plans[front.chosen].solver.time_limit_s
        lines.append(f"time limit: the frontier's searches share --time-limit-s ({limit:g} s here) and it ran out: "
                     f"{front.steps_tried} of {plural(front.steps_planned, 'SLO step')} searched (from both ends "
                     f"inwards, so the steps left out lie between the rows shown); a larger --time-limit-s or "
                     f"fewer --pareto-points reach them")
    return "\n".join(lines) + "\n"


def _ms(x) -> str:
    return "unbounded" if x is None else f"{x:.1f} ms"


def _loaded_lines(d: dict) -> list[str]:
    """The figures at a request rate (``at_qps``) or under a closed loop (``at_concurrency``)."""
    out = []
    q = d.get("at_qps")
    if q is not None:
        rate = "an unbounded rate" if q["qps"] is None else f"{q['qps']:g} req/s"
        front = ONLINE_REQUEST_OVERHEAD_S * 1e3
        out.append(f"at {rate}: {q['batch_in_flight']} in flight, TTFT {_ms(q['ttft_ms'])} (queueing and the HTTP "
                   f"front end's {front:.1f} ms included; a plan's TTFT leaves the front end out), TPOT "
                   f"{_ms(q['tpot_ms'])}, {q['output_tokens_per_s']:,.0f} output tok/s")
    c = d.get("at_concurrency")
    if c is not None:
        out.append(f"at concurrency {c['concurrency']}: {c['batch_in_flight']} in flight per replica, TTFT "
                   f"{_ms(c['ttft_ms'])} (p99 {_ms(c['ttft_p99_ms'])}), TPOT {_ms(c['tpot_ms'])}, ITL p50 "
                   f"{_ms(c['itl_p50_ms'])} p99 {_ms(c['itl_p99_ms'])}, end-to-end {_ms(c['e2e_ms'])}, "
                   f"{c['requests_per_s']:.2f} req/s, {c['output_tokens_per_s']:,.0f} output tok/s")
    r = d.get("benchmark_run")
    if r is not None:
        rate = "all at once" if r["qps"] is None else f"at {r['qps']:g} req/s"
        out.append(f"benchmark of {r['requests']} requests sent {rate}: {r['duration_s']:.1f} s, "
                   f"{r['requests_per_s']:.2f} req/s, {r['output_tokens_per_s']:,.0f} output tok/s, up to "
                   f"{r['max_in_flight']} in flight per replica, TTFT {_ms(r['ttft_ms'])} (p99 "
                   f"{_ms(r['ttft_p99_ms'])}), ITL {_ms(r['itl_ms'])} (p50 {_ms(r['itl_p50_ms'])}, p99 "
                   f"{_ms(r['itl_p99_ms'])}), end-to-end {_ms(r['e2e_ms'])}")
    return out
