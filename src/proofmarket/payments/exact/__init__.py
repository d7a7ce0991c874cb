"""The x402 ``exact`` rail: one EIP-3009 USDC transfer per call, verified before proving and settled once."""
