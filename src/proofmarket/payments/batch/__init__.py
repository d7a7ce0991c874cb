"""The x402 ``batch-settlement`` rail: payment channels (a deposit, a cumulative voucher per call, batched claims)."""
