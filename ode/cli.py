"""``osd-theory simulate``: integrate one HD system with one projection rule on one problem.

    osd-theory simulate [--optimizer adam] [--projection online_pca | path/to/file.py:function]
                        [--problem quadratic] [--dim 4x4] [--rank 2] [--t-end 100] [--seed 0]
                        [--hp a=1,b=2] [--proj-hp alpha=5] [--problem-hp condition=10]
                        [--method dopri5] [--rtol 1e-8] [--atol 1e-10] [--step-size 0.01]
                        [--stop-residual auto|R|none] [--max-seconds S] [--plot FILE] [--save FILE.npz|.json]
                        [--json] [--progress | --no-progress]

Every default is the Python API's (:class:`~ode.spec.RunSpec`, :class:`~ode.integrate.SimulationConfig`,
the registered classes' own defaults), and the run first prints every hyperparameter it
actually uses. It runs until the stationarity verdict would say "stationary" (``--stop-residual
auto``), ``--t-end``, or ``--max-seconds``, showing t-progress with an ETA on stderr, then
prints the final H, the largest relative rise of H between accepted steps, the final ‖∇L‖, the
Lyapunov condition, the verdicts and a one-line outcome; when H rose above tolerance, the
refinement test re-runs the spec to say "solver error" or "real violation" (``--no-refine``
skips it). ``--json`` prints exactly one JSON object.

A user projection ``path/to/file.py:function`` is imported and executed as Python.

Exit status: 0 when the run completed or stopped early (whatever the verdicts say), 1 when the
integration failed (non-finite state, solver failure: the message gives the time reached and the
cause), 2 for bad input (one line, no traceback), checked before integrating where it can be
(names, sizes, the ``--save``/``--plot`` paths).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from osd_theory.errors import IntegrationError, UserError

# matplotlib's savefig formats (Figure.canvas.get_supported_filetypes() with the Agg backend);
# a static list so that checking a --plot path does not import matplotlib
PLOT_FORMATS = ("eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz", "tif", "tiff", "webp")
SAVE_FORMATS = (".npz", ".json")
# ||P^T grad L|| / ||grad L|| below this at the end of a non-stationary run: the subspace is (nearly)
# blind to the gradient; at alpha = 1 on the 8x8 default quadratic it is 3e-3 at t = 30 and falling
from osd_theory.verdicts import BLIND_RATIO  # noqa: E402  (one definition, with the blindness verdict)


def parse_dim(text: str) -> tuple[int, int]:
    """'MxN' -> (M, N) with M, N >= 1."""
    parts = text.lower().split("x")
    try:
        m, n = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"--dim must look like MxN with positive integers (e.g. 4x4), got {text!r}") from None
    if m < 1 or n < 1:
        raise UserError(f"--dim must have positive sizes, got {text!r}")
    return m, n


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_hp(text: str | None, flag: str = "--hp") -> dict:
    """'a=1,b=2,kinetic_fn=tanh' -> {'a': 1, 'b': 2, 'kinetic_fn': 'tanh'} (numbers parsed)."""
    out: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise UserError(f"{flag} takes name=value pairs separated by commas (e.g. a=1,b=2), got {item!r}")
        out[key.strip()] = _value(val.strip())
    return out


def parse_stop(text: str) -> float | str | None:
    """``auto`` | ``none`` | a number ≥ 0, for --stop-residual."""
    low = text.strip().lower()
    if low in ("auto", "none"):
        return None if low == "none" else "auto"
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"--stop-residual takes 'auto', 'none' or a number, got {text!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise UserError(f"--stop-residual must be >= 0, got {text!r}")
    return v


def _names(registry) -> str:
    return ", ".join(registry.names())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from osd_theory.hd import HD_SYSTEMS
    from osd_theory.problems import PROBLEMS
    from osd_theory.projections import PROJECTIONS

    from ode.integrate import INTEGRATORS, SimulationConfig
    from ode.spec import RunSpec

    spec, cfg = RunSpec(), SimulationConfig()
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("--optimizer", default=spec.optimizer, help=f"HD system: {_names(HD_SYSTEMS)}")
    p.add_argument("--projection", default=spec.projection,
                   help=f"projection rule: {_names(PROJECTIONS)}, or path/to/file.py:function (a Python file, "
                        "imported and executed)")
    p.add_argument("--problem", default=spec.problem, help=f"test problem: {_names(PROBLEMS)}")
    p.add_argument("--dim", default=f"{spec.dim[0]}x{spec.dim[1]}", help="MxN size of W")
    p.add_argument("--rank", type=int, default=spec.rank, help="subspace rank r, 1 <= r <= min(M, N)")
    p.add_argument("--side", default=spec.side, help="projected side: auto (= std: the smaller side; square W: right), "
                                                     "left, right, reverse_std")
    p.add_argument("--t-end", type=float, default=cfg.t_end, help="final ODE time")
    p.add_argument("--seed", type=int, default=spec.seed, help="problem seed")
    p.add_argument("--hp", default=None, help="optimizer hyperparameters, e.g. a=1,b=2,e=0.01 (unset: the system's defaults)")
    p.add_argument("--proj-hp", default=None, help="projection options, e.g. alpha=5,pca_lambda=0.1,tau=1")
    p.add_argument("--problem-hp", default=None, help="problem options, e.g. condition=10")
    p.add_argument("--method", default=cfg.method, help=f"integrator: {_names(INTEGRATORS)}")
    p.add_argument("--rtol", type=float, default=cfg.rtol, help="adaptive methods: relative tolerance")
    p.add_argument("--atol", type=float, default=cfg.atol, help="adaptive methods: absolute tolerance")
    p.add_argument("--step-size", type=float, default=cfg.step_size, help="fixed-step methods only")
    p.add_argument("--stop-residual", default=str(cfg.stop_residual),
                   help="stop once the stationarity residual <= this: 'auto' (the verdict's tolerance "
                        "max(1e-6, 1e-6 r0)), a number, or 'none' (always run to --t-end)")
    p.add_argument("--max-seconds", type=float, default=cfg.max_seconds, help="wall-clock cap on the integration")
    p.add_argument("--plot", default=None, help="write H(t) and ||grad L||(t) to this image file (png, pdf, svg, ...)")
    p.add_argument("--save", default=None, help="save the trajectory (.npz or .json)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.add_argument("--no-refine", action="store_true", help="skip the refinement test when H rises")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="t-progress with an ETA on stderr: rewritten in place on a terminal, a line every 10 s "
                        "otherwise (default: on)")


def spec_from_args(args):
    from ode.integrate import SimulationConfig
    from ode.spec import RunSpec
    config = SimulationConfig(t_end=args.t_end, method=args.method, rtol=args.rtol, atol=args.atol,
                              step_size=args.step_size, stop_residual=parse_stop(args.stop_residual),
                              max_seconds=args.max_seconds, progress=args.progress is not False)
    return RunSpec(optimizer=args.optimizer, projection=args.projection, problem=args.problem,
                   dim=parse_dim(args.dim), rank=args.rank, seed=args.seed, side=args.side,
                   hp=parse_hp(args.hp), proj_hp=parse_hp(args.proj_hp, "--proj-hp"),
                   problem_hp=parse_hp(args.problem_hp, "--problem-hp"), config=config)


def check_output_path(path: str, flag: str, suffixes: tuple[str, ...]) -> Path:
    """Fail before integrating if ``path`` cannot be written: bad suffix, missing or read-only folder."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in suffixes:
        raise UserError(f"{flag} {path!r}: the file name must end in one of {', '.join(suffixes)}")
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UserError(f"{flag} {path!r} is a directory; give a file name")
    if not parent.is_dir():
        raise UserError(f"{flag} {path!r}: the folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UserError(f"{flag} {path!r}: not writable")
    return p


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _trend(reason: str) -> str:
    """The second-half trend the stationarity verdict measured ("still decreasing, 3.3x over ...")."""
    tail = reason.rsplit("(", 1)[-1].rstrip(")")
    return tail if "second half" in tail else "trend unknown"


def outcome(res: dict) -> str:
    """One line a newcomer can act on, computed from the verdicts and the final state."""
    sv, lv = res["stationarity_detail"], res["lyapunov_detail"]
    measure, r1, tol = res["stationarity_measure"], res["final_residual"], sv["tolerance"]
    lyap = ("H never rose between accepted steps" if lv["n_violations"] == 0 else
            f"H ROSE at {lv['n_violations']} steps" + (f" ({res['refinement']['kind']})" if res.get("refinement") else ""))
    t = res["t_final"]
    if res["stationary"]:
        head = f"converged: stationary at t={t:.4g} ({measure} {r1:.2g} <= tol {tol:.1g})"
    elif not res.get("has_stationary_points", True):
        head = f"no stationary point exists on {res['problem']}: {sv['reason']}"
    elif str(res["status"]).startswith("stopped: max_seconds"):
        head = (f"stopped by --max-seconds at t={t:.4g} before reaching a stationary point ({measure} {r1:.2g} > "
                f"tol {tol:.1g}): raise --max-seconds, or look for stiffness (accepted steps {res['n_steps']})")
    else:
        bv = res.get("blindness") or {}
        ratio = res["final_proj_grad_norm"] / res["final_grad_norm"] if res["final_grad_norm"] > 0 else 0.0
        if bv.get("equilibrium", False):
            tail = (f"||P^T grad L|| / ||grad L|| = {ratio:.1g}: the subspace has gone (nearly) blind to the gradient, "
                    "a spurious equilibrium of the projection flow (claims C4, C6: it can attract; a larger alpha makes "
                    "the point locally unstable, which does not guarantee the run converges)")
        elif ratio <= BLIND_RATIO:
            tail = (f"{_trend(sv['reason'])}; ||P^T grad L|| / ||grad L|| = {ratio:.1g} at the end, but "
                    + ("the signal came back over the second half (each jump of the rule restores it)"
                       if bv.get("restorations") else "the residual is still falling")
                    + ": blind for now, not an equilibrium; raise --t-end to see where it goes")
        else:
            tail = f"{_trend(sv['reason'])}: raise --t-end to see where it goes"
        head = f"not stationary by t={t:.4g} ({measure} {r1:.2g} > tol {tol:.1g}); " + tail
    return f"{head}; {lyap}"


def summarize(traj, refine_fn=None) -> dict:
    """The result object (also what --json prints)."""
    from osd_theory.verdicts import blindness_verdict, lyapunov_verdict, stationarity_verdict
    lv, sv = lyapunov_verdict(traj), stationarity_verdict(traj)
    out = {
        "optimizer": traj.meta["system"], "projection": traj.meta["projection"], "problem": traj.meta["problem"],
        "dim": traj.meta["dim"], "resolved": traj.meta.get("resolved"), "status": traj.meta["status"],
        "t_final": traj.final("t"), "n_steps": len(traj), "nfev": traj.meta["nfev"], "wall_s": traj.meta["wall_s"],
        "final_H": traj.final("H"), "max_rel_H_increase": lv.max_rel_rise,
        "final_grad_norm": traj.final("grad_norm"), "final_residual": traj.final("residual"),
        "final_proj_grad_norm": traj.final("proj_grad_norm"),
        "has_stationary_points": traj.meta.get("has_stationary_points", True),
        "stationarity_measure": traj.meta["stationarity_name"],
        "condition_holds": traj.meta["condition_holds"], "condition": traj.meta["condition"],
        "autonomous": traj.meta["autonomous"],
        "lyapunov": lv.holds, "stationary": sv.stationary,
        "lyapunov_detail": lv.to_dict(), "stationarity_detail": sv.to_dict(), "refinement": None,
        "blindness": blindness_verdict(traj).to_dict(),
    }
    if not lv.holds and refine_fn is not None:
        r = refine_fn()
        out["refinement"] = {"kind": r.kind, "explanation": r.explanation, "levels": r.levels}
    out["outcome"] = outcome(out)
    return _finite(out)


def format_settings(resolved: dict) -> str:
    """The hyperparameters a run uses, one line per component."""
    def kv(d):
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items() if k != "name")
    rows = [f"{part:<12}{d['name']}({kv(d)})" if "name" in d else f"{part:<12}{kv(d)}" for part, d in resolved.items()]
    return "\n".join(rows)


def format_summary(res: dict) -> str:
    lv, sv = res["lyapunov_detail"], res["stationarity_detail"]
    lines = [
        f"status     {res['status']} at t={res['t_final']:.6g} ({res['n_steps']} accepted steps, {res['nfev']} evaluations, {res['wall_s']:.2f} s)",
        f"final H    {res['final_H']:.10g}",
        f"max rel H increase  {res['max_rel_H_increase']:.3g}",
        f"final ||grad L||    {res['final_grad_norm']:.3g}" + (
            f"   ({res['stationarity_measure']} {res['final_residual']:.3g})" if res["stationarity_measure"] != "||grad L||" else ""),
        f"condition  {'holds' if res['condition_holds'] else 'VIOLATED'}: {res['condition']}",
        f"lyapunov   {'yes' if res['lyapunov'] else 'NO'}: {lv['n_violations']} step rises above tol, max pointwise dH/dt "
        + ("not recorded" if lv["max_pointwise_hdot"] is None else f"{lv['max_pointwise_hdot']:.3g}"),
        f"stationary {'yes' if res['stationary'] else 'no'}: {sv['reason']}",
    ]
    if res.get("refinement"):
        lines.append(f"refinement {res['refinement']['kind']}: {res['refinement']['explanation']}")
    lines.append(f"outcome    {res['outcome']}")
    return "\n".join(lines)


def run(args) -> int:
    from ode.spec import build_run, describe_resolved, run_built
    spec = spec_from_args(args)
    save = check_output_path(args.save, "--save", SAVE_FORMATS) if args.save else None
    plot = check_output_path(args.plot, "--plot", tuple("." + f for f in PLOT_FORMATS)) if args.plot else None
    system, rule, problem = build_run(spec)          # bad names and options fail here, before integrating
    spec.config.validate(system)
    if not args.json:
        print("run        " + format_settings(describe_resolved(system, rule, problem, spec.config))
              .replace("\n", "\n           "), flush=True)
    try:
        traj = run_built(spec, system, rule, problem)
    except IntegrationError as exc:
        print(f"osd-theory simulate: integration failed: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "t_reached": exc.t_reached, "cause": exc.cause}))
        return 1

    def refine():
        from ode.refinement import refinement_test
        return refinement_test(spec)

    res = summarize(traj, None if args.no_refine else refine)
    print(json.dumps(res, allow_nan=False) if args.json else format_summary(res), flush=True)
    if save:
        traj.save(save)
    if plot:
        from ode.plot import plot_trajectory
        plot_trajectory(traj, plot)
    return 0


__all__ = ["add_arguments", "run", "spec_from_args", "summarize", "format_summary", "parse_dim", "parse_hp",
           "check_output_path", "outcome"]
