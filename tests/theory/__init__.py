"""Property tests of the math core (osd_theory) and its symbolic proofs."""
