"""x402 ``upto``: a metered call (generation) paid by a Permit2 authorization of its ceiling, settled at what it
used."""
