"""The prices that turn the gas benches' gas into US dollars: the one place they are stated.

Chosen 2026-11-23 as round figures for a quiet day, not a live quote: fees on both chains move with demand (a busy
hour can cost ten times more) and so does ETH. Change them here and rerun the gas benches (``bench/gas.py``,
``bench/gas_attested.py``) to get tables at your own prices.

- L2 execution gas price (base fee + tip, gwei): Base 0.005 (Base documents a minimum base fee of 0.002 gwei on
  Base Mainnet; a small tip on top), Arbitrum One 0.01 (its minimum base fee; Arbitrum pays no tip).
- ETH at 3,000 USD.
- L1 data fee: extra on both chains (each transaction also pays for its bytes posted to Ethereum). The tables give
  an upper bound from the signed transaction's size: 16 L1 gas per byte (the calldata price of a non-zero byte) at
  an L1 gas price of 1 gwei. Both chains compress their batches and post them as blobs, priced apart from L1 gas, so
  what they charge is usually far below this bound; it is the figure to plan with if blobs were ever as dear as
  calldata.
"""

from __future__ import annotations

PRICES_CHOSEN = "2026-11-23"
ETH_USD = 3_000.0
L2_GAS_GWEI = {"Base": 0.005, "Arbitrum": 0.01}  # execution gas price: base fee + tip
L1_GAS_GWEI = 1.0  # Ethereum gas price for the L1 data bound
L1_GAS_PER_BYTE = 16  # calldata gas of a non-zero byte (EIP-2028)
GWEI = 10**-9  # ETH


def usd(gas: int, gwei: float) -> float:
    """The cost in USD of ``gas`` at ``gwei`` per gas."""
    return gas * gwei * GWEI * ETH_USD


def l2_usd(gas: int, chain: str) -> float:
    """The L2 execution cost in USD of ``gas`` on ``chain`` (a key of ``L2_GAS_GWEI``)."""
    return usd(gas, L2_GAS_GWEI[chain])


def l1_data_bound_usd(tx_bytes: int) -> float:
    """The upper bound on the L1 data fee in USD of a signed transaction of ``tx_bytes`` bytes."""
    return usd(tx_bytes * L1_GAS_PER_BYTE, L1_GAS_GWEI)


def dollars(value: float) -> str:
    """A cost for a table: four decimals below a dollar (gas on an L2 costs cents), two above."""
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def assumptions() -> dict[str, object]:
    """The prices, for a bench's JSON output."""
    return {"chosen": PRICES_CHOSEN, "eth_usd": ETH_USD, "l2_gas_gwei": dict(L2_GAS_GWEI), "l1_gas_gwei": L1_GAS_GWEI,
            "l1_gas_per_byte": L1_GAS_PER_BYTE}


def legend() -> str:
    """The assumptions in one paragraph, for the top of a bench's Markdown."""
    l2 = ", ".join(f"{chain} {gwei:g} gwei" for chain, gwei in L2_GAS_GWEI.items())
    return (f"USD at the prices in `bench/prices.py` (chosen {PRICES_CHOSEN}; round figures for a quiet day, not a "
            f"live quote): L2 execution gas {l2} (base fee + tip), ETH at ${ETH_USD:,.0f}. The L1 data fee is "
            f"extra on both chains: `L1 data <=` bounds it from the signed transaction's size ({L1_GAS_PER_BYTE} L1 "
            f"gas per byte at {L1_GAS_GWEI:g} gwei, the calldata price); both chains compress batches and post them "
            f"as blobs, so the fee charged is usually far below the bound.")
