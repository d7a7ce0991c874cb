"""x402 ``proven``: a payment only a proof the chain verified can capture (``scheme.py``: the payload; ``client.py``:
the payer's side in the x402 SDK's client; ``rail.py``: the node's side)."""
