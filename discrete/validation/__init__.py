"""LLaMA pretraining that links the subspace-optimizer theory to real training.

A consumer of the optimizers in :mod:`discrete`, never imported by them. The files,
read top to bottom like nanoGPT:

- ``config.py``     every setting once: ``RunConfig`` fields with their rule, help and role
- ``rules.py``      what a setting accepts (parse, check, describe) -> one-line errors everywhere
- ``flags.py``      command-line flags generated from ``RunConfig``
- ``resolve.py``    defaults that depend on other settings, and the cross-field checks
- ``precedence.py`` one place per setting: group/rule options that a flag sets, options nothing reads
- ``threads.py``    CPU threads of a run (auto: the cores other jobs leave free)
- ``model.py``      LLaMA (RMSNorm, RoPE, SwiGLU, SDPA attention) and the ``FLAVOURS`` registry
- ``tokenizer.py``  byte-level BPE trained on the corpus, cached by a hash of its inputs
- ``data.py``       corpus reading, token-array cache (memmap), seeded epoch batching
- ``optim.py``      param groups (attention/MLP linears projected) and the optimizer registry
- ``metrics.py``    theory-linked metrics from the optimizer's real state (H-proxy, residual, drift, bytes)
- ``checkpoint.py`` atomic, checksummed, ``weights_only``-loadable checkpoints
- ``rundir.py``     directory rules: one run per directory, locked while live
- ``resume.py``     what a resume may change, and the record of each change
- ``identity.py``   run id and content hashes: a resume refuses files that are not the run's own
- ``provenance.py`` commit, command, versions, threads, device sharing of every record
- ``guard.py``      failures inside a step (divergence, a failing user rule) as one-line errors
- ``runlog.py``     config, provenance, the JSONL log and the run's history (events.jsonl)
- ``signals.py``    SIGTERM/SIGINT: checkpoint, then exit
- ``distributed.py``torchrun / DDP setup
- ``trainer.py``    the loop
- ``sweep.py``      a grid of settings x seeds, resumable as a whole
- ``report.py`` / ``stats.py`` / ``plots.py``  summaries, seed groups with t-intervals, figures
- ``cli.py`` / ``sweep_cli.py`` / ``report_cli.py``  ``osd-theory validate``, ``sweep`` and ``report``

Nothing here is imported by ``import discrete``.
"""
