"""User projection rules for the FSDP2 tests (a file, so that the spawned processes can import it by path)."""


def gamma(t, P, G):
    """Oja-like pull toward G's span with a decay (P (d, r), G (m, n); d is m or n)."""
    Gs = G if P.shape[0] == G.shape[0] else G.mT
    return Gs @ (Gs.mT @ P) / (G.norm() ** 2 + 1e-12) - 0.25 * P


def fails_on_rank0(t, P, G):
    """Raises on process 0 only, from the second step on: every process must refuse the step."""
    import torch.distributed as dist

    if t >= 1 and dist.is_initialized() and dist.get_rank() == 0:
        raise RuntimeError("rank 0 refuses")
    return gamma(t, P, G)
