"""Progress reports and interruption for long searches.

A :class:`SearchControl` travels with one ``search`` call. It carries

* an optional ``report`` callback that receives short status lines (candidates priced,
  each solve's incumbent and bound), which the CLI shows on stderr when attached to a
  terminal, and
* the interruption state: :func:`run_interruptibly` runs a CP-SAT solve on a worker
  thread so that Ctrl-C (``KeyboardInterrupt`` in the main thread) stops the solver
  cleanly with its best solution so far, instead of killing the process mid-search.

Reporting observes the search and never steers it: the same inputs give the same plan
with or without a reporter.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from planner.solve.ortools_loader import cp_model  # ortools.sat.python.cp_model, without pandas


@dataclass
class SearchControl:
    report: Callable[[str], None] | None = None
    interrupted: bool = False
    solves: int = field(default=0)
    solved: bool = False  # some solve found a plan (OPTIMAL or FEASIBLE)

    def say(self, line: str) -> None:
        if self.report is not None:
            self.report(line)


def relative_gap(incumbent: float, bound: float) -> float:
    """|bound - incumbent| over the larger of the two, so within [0, 1] for a bound on the right side;
    0 when they agree (dividing by a bound of 0 once printed a gap of 5.9e13 %)."""
    if bound == incumbent:
        return 0.0
    return abs(bound - incumbent) / max(abs(incumbent), abs(bound))


class _Incumbents(cp_model.CpSolverSolutionCallback):
    """Reports each improving solution's objective and the bound, in the caller's units."""

    def __init__(self, control: SearchControl, scale: Callable[[float], float], unit: str, label: str):
        super().__init__()
        self._control, self._scale, self._unit, self._label = control, scale, unit, label

    def on_solution_callback(self) -> None:
        inc = self._scale(self.objective_value)
        bound = self._scale(self.best_objective_bound)
        gap = relative_gap(inc, bound)
        self._control.say(f"{self._label}: incumbent {inc:,.1f} {self._unit}, bound {bound:,.1f} "
                          f"(gap {gap:.1%}) at {self.wall_time:.1f} s")


def _hold_sigint() -> bool:
    """Block SIGINT for this thread (and the threads it starts) where POSIX allows; True if held."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return True


def _release_sigint() -> bool:
    """Unblock SIGINT; a Ctrl-C pressed meanwhile is delivered now. Returns False (no longer held)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return False


def run_interruptibly(solver: cp_model.CpSolver, model: cp_model.CpModel, control: SearchControl | None,
                      *, scale: Callable[[float], float], unit: str):
    """``solver.solve(model)``; a Ctrl-C during the solve stops it and returns its status so far
    (FEASIBLE with the incumbent, or UNKNOWN), marking ``control.interrupted``."""
    # CP-SAT's own SIGINT handler would replace Python's (and is not put back after the
    # solve; run off the main thread it aborts the process): Ctrl-C belongs to the main
    # thread, which stops the solve through stop_search().
    solver.parameters.catch_sigint_signal = False
    if control is None:
        return solver.solve(model)
    control.solves += 1
    callback = _Incumbents(control, scale, unit, f"solve {control.solves}") if control.report else None
    result: dict[str, object] = {}
    done = threading.Event()

    def target() -> None:
        try:
            result["status"] = solver.solve(model, callback) if callback else solver.solve(model)
        except BaseException as e:  # pragma: no cover - re-raised in the caller's thread
            result["error"] = e
        finally:
            done.set()

    # Wait on an Event, not Thread.join: a KeyboardInterrupt inside join() can leave the
    # thread marked finished while it still runs (CPython gh-90882, before 3.13).
    # Never leave this function while the solver thread runs: a process exiting under a
    # running solve aborts in C++ ("terminate called without an active exception"). So Ctrl-C
    # is held back (POSIX) while the thread starts, and lands in the wait below; and
    # stop_search() is repeated until the solve has seen it (a stop asked before the solve
    # began would be forgotten).
    held = _hold_sigint()
    threading.Thread(target=target, name="cp-sat", daemon=True).start()
    while not done.is_set():
        try:
            if held:
                held = _release_sigint()
            if control.interrupted:
                solver.stop_search()
            done.wait(0.05)
        except KeyboardInterrupt:
            control.interrupted = True
            solver.stop_search()
    if held:  # the solve ended before the wait began: let a held Ctrl-C through now
        _release_sigint()
    if "error" in result:  # pragma: no cover
        raise result["error"]  # type: ignore[misc]
    status = result["status"]
    control.solved = control.solved or status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    if control.report and status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        control.say(f"solve {control.solves}: {solver.status_name(status)}, {scale(solver.objective_value):,.1f} "
                    f"{unit} (bound {scale(solver.best_objective_bound):,.1f}) in {solver.wall_time:.1f} s")
    return result["status"]  # type: ignore[return-value]
