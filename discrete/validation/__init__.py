"""LLaMA pretraining that links the subspace-optimizer theory to real training.

A consumer of the optimizers in :mod:`discrete`, never imported by them. The files,
read top to bottom like nanoGPT:

- ``model.py``      LLaMA (RMSNorm, RoPE, SwiGLU, SDPA attention) and the ``FLAVOURS`` registry
- ``tokenizer.py``  byte-level BPE trained on the corpus, cached by a hash of its inputs
- ``data.py``       corpus reading, token-array cache (memmap), seeded epoch batching
- ``optim.py``      param groups (attention/MLP linears projected) and the optimizer registry
- ``metrics.py``    theory-linked metrics from the optimizer's real state (H-proxy, residual, drift, bytes)
- ``checkpoint.py`` atomic, ``weights_only``-loadable checkpoints
- ``distributed.py``torchrun / DDP setup
- ``trainer.py``    the loop
- ``cli.py`` / ``report_cli.py`` / ``report.py``  ``osd-theory validate`` and ``osd-theory report``

Nothing here is imported by ``import discrete``.
"""
