"""``osd-theory simulate``: integrate one HD system with one projection rule on one problem.

    osd-theory simulate [--optimizer adam] [--projection online_pca | path/to/file.py:function]
                        [--problem quadratic] [--dim 8x8] [--rank 2] [--t-end 20] [--seed 0]
                        [--hp a=1,b=2] [--proj-hp alpha=5] [--problem-hp condition=10]
                        [--method dopri5] [--rtol 1e-8] [--atol 1e-10] [--step-size 0.01]
                        [--stop-residual R] [--plot FILE] [--save FILE.npz|.json] [--json] [--progress]

Prints the final H, the largest relative rise of H between accepted steps, the final
‖∇L‖, the Lyapunov condition and the verdicts; when H rose above tolerance, the
refinement test re-runs the spec to say "solver error" or "real violation"
(``--no-refine`` skips it). ``--json`` prints exactly one JSON object.

Exit status: 0 when the run completed (whatever the verdicts say), 1 when the integration
failed (non-finite state, solver failure: the message gives the time reached and the
cause), 2 for bad input (one line, no traceback).
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from osd_theory.errors import IntegrationError, UserError

DEFAULTS = dict(optimizer="adam", projection="online_pca", problem="quadratic", dim="8x8", rank=2, t_end=10.0)
# Projection options applied unless --proj-hp sets them: the paper's α = ε^P/ε^W = 5 (THEORY §4.3).
# With the rule's own default α = 1, Adam (e = 1e-2) + online PCA on the default quadratic stalls
# at ‖∇L‖ ≈ 0.77 with Pᵀ∇L → 0: the spurious equilibria of THEORY §2 attract it.
DEFAULT_PROJ_HP = {"online_pca": {"alpha": 5.0}}


def parse_dim(text: str) -> tuple[int, int]:
    """'MxN' -> (M, N) with M, N >= 1."""
    parts = text.lower().split("x")
    try:
        m, n = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"--dim must look like MxN with positive integers (e.g. 8x8), got {text!r}") from None
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizer", default=DEFAULTS["optimizer"], help="HD system (osd_theory.hd.HD_SYSTEMS)")
    p.add_argument("--projection", default=DEFAULTS["projection"], help="rule name or path/to/file.py:function")
    p.add_argument("--problem", default=DEFAULTS["problem"], help="test problem (osd_theory.problems.PROBLEMS)")
    p.add_argument("--dim", default=DEFAULTS["dim"], help="MxN size of W (default 8x8)")
    p.add_argument("--rank", type=int, default=DEFAULTS["rank"], help="subspace rank r, 1 <= r <= min(M, N)")
    p.add_argument("--side", default="auto", help="projected side: auto | left | right")
    p.add_argument("--t-end", type=float, default=DEFAULTS["t_end"], help="final ODE time (default 10)")
    p.add_argument("--seed", type=int, default=0, help="problem seed")
    p.add_argument("--hp", default=None, help="optimizer hyperparameters, e.g. a=1,b=2,e=0.01")
    p.add_argument("--proj-hp", default=None, help="projection options, e.g. alpha=5,pca_lambda=0.1,tau=1")
    p.add_argument("--problem-hp", default=None, help="problem options, e.g. condition=10")
    p.add_argument("--method", default="dopri5", help="integrator (dopri5, dopri8, bosh3, adaptive_heun, euler, rk4, implicit_midpoint)")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=1e-10)
    p.add_argument("--step-size", type=float, default=1e-2, help="fixed-step methods only")
    p.add_argument("--stop-residual", type=float, default=None, help="stop once the stationarity residual <= this")
    p.add_argument("--plot", default=None, help="write H(t) and ||grad L||(t) to this image file")
    p.add_argument("--save", default=None, help="save the trajectory (.npz or .json)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.add_argument("--no-refine", action="store_true", help="skip the refinement test when H rises")
    p.add_argument("--progress", action="store_true", help="show a tqdm progress bar")


def spec_from_args(args):
    from ode.integrate import SimulationConfig
    from ode.spec import RunSpec
    config = SimulationConfig(t_end=args.t_end, method=args.method, rtol=args.rtol, atol=args.atol,
                              step_size=args.step_size, stop_residual=args.stop_residual, progress=args.progress)
    return RunSpec(optimizer=args.optimizer, projection=args.projection, problem=args.problem,
                   dim=parse_dim(args.dim), rank=args.rank, seed=args.seed, side=args.side,
                   hp=parse_hp(args.hp), proj_hp={**DEFAULT_PROJ_HP.get(args.projection, {}), **parse_hp(args.proj_hp, "--proj-hp")},
                   problem_hp=parse_hp(args.problem_hp, "--problem-hp"), config=config)


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def summarize(traj, refine_fn=None) -> dict:
    """The result object (also what --json prints)."""
    from osd_theory.verdicts import lyapunov_verdict, stationarity_verdict
    lv, sv = lyapunov_verdict(traj), stationarity_verdict(traj)
    out = {
        "optimizer": traj.meta["system"], "projection": traj.meta["projection"], "problem": traj.meta["problem"],
        "dim": traj.meta["dim"], "status": traj.meta["status"], "t_final": traj.final("t"), "n_steps": len(traj),
        "nfev": traj.meta["nfev"], "wall_s": traj.meta["wall_s"],
        "final_H": traj.final("H"), "max_rel_H_increase": lv.max_rel_rise,
        "final_grad_norm": traj.final("grad_norm"), "final_residual": traj.final("residual"),
        "stationarity_measure": traj.meta["stationarity_name"],
        "condition_holds": traj.meta["condition_holds"], "condition": traj.meta["condition"],
        "autonomous": traj.meta["autonomous"],
        "lyapunov": lv.holds, "stationary": sv.stationary,
        "lyapunov_detail": lv.to_dict(), "stationarity_detail": sv.to_dict(), "refinement": None,
    }
    if not lv.holds and refine_fn is not None:
        r = refine_fn()
        out["refinement"] = {"kind": r.kind, "explanation": r.explanation, "levels": r.levels}
    return _finite(out)


def format_summary(res: dict) -> str:
    lv, sv = res["lyapunov_detail"], res["stationarity_detail"]
    lines = [
        f"run        {res['optimizer']} | {res['projection']} | {res['problem']} {res['dim'][0]}x{res['dim'][1]}",
        f"status     {res['status']} at t={res['t_final']:.6g} ({res['n_steps']} accepted steps, {res['nfev']} evaluations, {res['wall_s']:.2f} s)",
        f"final H    {res['final_H']:.10g}",
        f"max rel H increase  {res['max_rel_H_increase']:.3g}",
        f"final ||grad L||    {res['final_grad_norm']:.3g}" + (
            f"   ({res['stationarity_measure']} {res['final_residual']:.3g})" if res["stationarity_measure"] != "||grad L||" else ""),
        f"condition  {'holds' if res['condition_holds'] else 'VIOLATED'}: {res['condition']}",
        f"lyapunov   {'yes' if res['lyapunov'] else 'NO'}: {lv['n_violations']} step rises above tol, max pointwise dH/dt {lv['max_pointwise_hdot']}",
        f"stationary {'yes' if res['stationary'] else 'no'}: {sv['reason']}",
    ]
    if res.get("refinement"):
        lines.append(f"refinement {res['refinement']['kind']}: {res['refinement']['explanation']}")
    return "\n".join(lines)


def run(args) -> int:
    from ode.spec import run_spec
    spec = spec_from_args(args)
    try:
        traj = run_spec(spec)
    except IntegrationError as exc:
        print(f"osd-theory simulate: integration failed: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "t_reached": exc.t_reached, "cause": exc.cause}))
        return 1
    if args.save:
        traj.save(args.save)
    if args.plot:
        from ode.plot import plot_trajectory
        plot_trajectory(traj, args.plot)

    def refine():
        from ode.refinement import refinement_test
        return refinement_test(spec)

    res = summarize(traj, None if args.no_refine else refine)
    print(json.dumps(res, allow_nan=False) if args.json else format_summary(res))
    return 0
