"""What runs the subspace step: one driver (the optimizer, :mod:`discrete.base`), three executors.

As torch.optim splits ``AdamW`` from ``_single_tensor_adamw`` / ``_multi_tensor_adamw`` / ``_fused_adamw``:
the optimizer validates and resolves each parameter with a gradient once per step into an
:class:`~discrete.step.items.Item` (parameter, gradient, state, bound rule, plan, index, k, ‖G‖), the
checks of :mod:`discrete.step.checks` run, and the executors take the same list of items with the same
signature and call the same step functions (:mod:`discrete.subspace`)::

    prepare(items, ctx, prepared=False) -> plan      # pure: what the step needs of G; may reject
    commit(plan, ctx) -> None                         # mutates; cannot fail on a checked plan

| executor  | module    | for                                                                    |
|-----------|-----------|------------------------------------------------------------------------|
| single    | single.py | the reference: one matrix at a time (``foreach=False``, user rules)    |
| batched   | batched.py| the default: buckets of same-shape matrices as stacked (L, ·, ·) tensors|
| sharded   | sharded.py| FSDP2 DTensors: local shards plus the collectives each rule needs      |

Every executor prepares before any commits (the driver's :meth:`~discrete.base.SubspaceOptimizer.run`), so a
step is atomic in every path.

The registry of executors is :data:`discrete.step.executors.EXECUTORS` (this package's ``__init__`` imports
nothing, so that :mod:`discrete.subspace` can use :mod:`discrete.step.layout` without an import cycle).
"""
