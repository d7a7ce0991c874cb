"""A stateful property test of BatchSettlement (the x402 batch-settlement channels, contracts/BatchSettlement.sol)
against anvil, every signature made by the x402 SDK's own signing code.

Actors: a payer (who also signs its vouchers), two receivers (one channel each), their receiver authorizer (signs
claim batches and refunds), a stranger. Random sequences of deposits, vouchers (the payer's, and forged ones), claims
(the receiver's own, or an authorizer-signed batch anyone sends), settles, the payer's timed withdrawal, refunds (the
receiver's, and authorizer-signed ones, replays included) and time, each sent by any actor; after every step:

- solvent: the contract's token balance is exactly the channels' balances less what their receivers were swept;
- bounded: a channel's claimed total never exceeds its balance nor the highest voucher its payer signed, and only
  grows;
- paid as agreed: each receiver got exactly its claimed total once swept, the payer exactly its deposits less the
  channels' balances (its withdrawals and refunds), nothing more, nothing twice;
- roles: only the payer starts a withdrawal; only the receiver (or its authorizer) claims or refunds without the
  authorizer's signature; a voucher not signed by the payer claims nothing; a signed refund goes through once.

The expected state comes from the model below (the contract's documented rules), never read back from the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chain_helpers import Chain
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from property_helpers import attempt
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.batch_settlement.authorizer_signer import (
    LocalAuthorizerSigner,
    sign_claim_batch,
    sign_refund,
)
from x402.mechanisms.evm.batch_settlement.client.eip3009 import create_batch_settlement_eip3009_deposit_payload
from x402.mechanisms.evm.batch_settlement.client.voucher import sign_voucher
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
)
from x402.mechanisms.evm.batch_settlement.facilitator.claim import build_voucher_claim_args
from x402.mechanisms.evm.batch_settlement.facilitator.deposit_eip3009 import build_eip3009_deposit_collector_data
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, VoucherClaim
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id
from x402.schemas import PaymentRequirements

from proofmarket.chain import advance_time
from proofmarket.chain.channels import channel_state

DELAY = 900  # the channels' withdraw delay (the contract's minimum)
ACTORS = ("payer", "receiver", "receiver2", "authorizer", "stranger")
CHANNELS = (0, 1)  # channel k pays RECEIVERS[k]
RECEIVERS = ("receiver", "receiver2")
# amounts relative to the state (what is available, claimed, signed), where the rules' edges are: a random sequence
# reaches them as often as the middle, so a planted bug on an edge is found in a few sequences
SHARES = st.sampled_from(["none", "one", "half", "all", "one more", "far more"])


def share_of(what: str, of: int) -> int:
    return {"none": 0, "one": min(1, of), "half": of // 2, "all": of, "one more": of + 1, "far more": of + 4_000}[what]


@dataclass
class Model:
    """One channel as the documented rules have it."""

    balance: int = 0
    claimed: int = 0
    highest_voucher: int = 0
    pending: int = 0
    pending_at: int = 0
    nonce: int = 0
    used_refunds: set[tuple[int, int]] = field(default_factory=set)


def channel_machine(chain: Chain, bs: Any) -> type[RuleBasedStateMachine]:
    client, usdc = chain.client, chain.usdc
    a = chain.accounts
    acc = {"payer": a.consumer, "receiver": a.prover, "receiver2": a.prover2, "authorizer": a.owner,
           "stranger": a.stranger}
    network = f"eip155:{client.chain_id}"
    configs = [ChannelConfig(payer=acc["payer"].address, payer_authorizer=acc["payer"].address,
                             receiver=acc[RECEIVERS[k]].address, receiver_authorizer=acc["authorizer"].address,
                             token=usdc.address, withdraw_delay=DELAY, salt="0x" + f"{k + 0x5a:064x}")
               for k in CHANNELS]
    ids = [compute_channel_id(c, network) for c in configs]

    class ChannelMachine(RuleBasedStateMachine):
        vouchers = Bundle("vouchers")

        def __init__(self) -> None:
            super().__init__()
            self.snapshot = client.rpc("evm_snapshot", [])
            self.model = [Model() for _ in CHANNELS]
            self.swept = {r: 0 for r in RECEIVERS}  # what each receiver was sent
            self.swept_due = {r: 0 for r in RECEIVERS}  # claimed and not swept yet
            self.deposited = 0
            self.start: dict[str, int] = {}
            self.outside = 0

        @initialize()
        def start_balances(self) -> None:
            self.start = {n: usdc.balance_of(acc[n].address) for n in ("payer", *RECEIVERS)}
            self.outside = usdc.balance_of(BATCH_SETTLEMENT_ADDRESS)  # other channels' (none in a fresh snapshot)

        def teardown(self) -> None:
            client.rpc("evm_revert", [self.snapshot])

        def _available(self, k: int) -> int:
            return self.model[k].balance - self.model[k].claimed

        # --- rules --------------------------------------------------------------------------------------------
        @rule(k=st.sampled_from(CHANNELS), amount=st.sampled_from([1, 700, 5_000]), who=st.sampled_from(ACTORS))
        def deposit(self, k: int, amount: int, who: str) -> None:
            """The payer's EIP-3009 deposit (the SDK's payload), sent by anyone through the deposit collector (valid
            for months: the machine moves the chain's clock, the SDK signs with this machine's)."""
            requirements = PaymentRequirements(scheme="batch-settlement", network=network, asset=usdc.address,
                                               amount="1", pay_to=configs[k].receiver, max_timeout_seconds=10**7,
                                               extra={"name": "USD Coin", "version": "2"})
            payload = create_batch_settlement_eip3009_deposit_payload(
                EthAccountSigner(acc["payer"]), requirements, configs[k], amount, amount)
            data = build_eip3009_deposit_collector_data(payload)
            fn = bs.functions.deposit(to_contract_channel_config(configs[k]), amount,
                                      ERC3009_DEPOSIT_COLLECTOR_ADDRESS, data)
            assert attempt(client.transact, fn, acc[who]), f"{who} could not send the payer's deposit of {amount}"
            self.model[k].balance += amount
            self.deposited += amount

        @rule(target=vouchers, k=st.sampled_from(CHANNELS), more=st.sampled_from([0, 1, 300, 4_000]),
              signer=st.just("payer") | st.sampled_from(ACTORS))
        def voucher(self, k: int, more: int, signer: str) -> tuple[int, int, str, bool]:
            """A voucher of channel ``k`` for a cumulative maximum above the highest signed so far, signed by
            ``signer`` (only the payer's counts)."""
            m = self.model[k]
            maximum = m.highest_voucher + more
            signed = sign_voucher(EthAccountSigner(acc[signer]), ids[k], maximum, network)
            if signer == "payer":
                m.highest_voucher = max(m.highest_voucher, maximum)
            return k, maximum, signed.signature, signer == "payer"

        @rule(v=vouchers, share=SHARES, of_voucher=st.booleans(),
              who=st.sampled_from(RECEIVERS) | st.just("authorizer") | st.sampled_from(ACTORS),
              batch_signer=st.none() | st.just("authorizer") | st.sampled_from(ACTORS))
        def claim(self, v: tuple[int, int, str, bool], share: str, of_voucher: bool, who: str,
                  batch_signer: str | None) -> None:
            """Claim a cumulative total (a ``share`` of the voucher's maximum, or of the channel's balance) on voucher
            ``v``: ``claim`` sent by ``who`` itself (``batch_signer`` None), or ``claimWithSignature`` with a batch
            signed by ``batch_signer``, sent by ``who``."""
            k, maximum, signature, genuine = v
            m = self.model[k]
            total = share_of(share, maximum if of_voucher else m.balance)
            claims = [VoucherClaim(channel=configs[k], max_claimable_amount=str(maximum), signature=signature,
                                   total_claimed=str(total))]
            args = build_voucher_claim_args(claims)
            if batch_signer is None:
                ok = attempt(client.transact, bs.functions.claim(args), acc[who])
                allowed = who in (RECEIVERS[k], "authorizer")
            else:
                batch = sign_claim_batch(LocalAuthorizerSigner(acc[batch_signer]), claims, network)
                ok = attempt(client.transact, bs.functions.claimWithSignature(args, bytes.fromhex(batch[2:])),
                             acc[who])
                allowed = batch_signer == "authorizer"
            rules = allowed and genuine and total <= maximum and total <= m.balance
            assert ok == rules, (f"a claim of {total} on channel {k} (voucher {maximum}, the payer's: {genuine}; "
                                 f"sent by {who}, batch signed by {batch_signer}; balance {m.balance}) "
                                 f"{'went through' if ok else 'was refused'}")
            if ok and total > m.claimed:
                self.swept_due[RECEIVERS[k]] += total - m.claimed
                m.claimed = total

        @rule(r=st.sampled_from(RECEIVERS), who=st.sampled_from(ACTORS))
        def settle(self, r: str, who: str) -> None:
            """Anyone sweeps a receiver's claimed funds to it."""
            assert attempt(client.transact, bs.functions.settle(acc[r].address, usdc.address), acc[who])
            self.swept[r] += self.swept_due[r]
            self.swept_due[r] = 0

        @rule(k=st.sampled_from(CHANNELS), share=SHARES, who=st.just("payer") | st.sampled_from(ACTORS))
        def initiate_withdraw(self, k: int, share: str, who: str) -> None:
            m = self.model[k]
            amount = share_of(share, self._available(k))
            fn = bs.functions.initiateWithdraw(to_contract_channel_config(configs[k]), amount)
            ok = attempt(client.transact, fn, acc[who])
            rules = who == "payer" and 0 < amount <= self._available(k)
            assert ok == rules, f"{who} starting a withdrawal of {amount} (available {self._available(k)}): {ok}"
            if ok:
                m.pending, m.pending_at = amount, client.timestamp()

        @rule(k=st.sampled_from(CHANNELS), who=st.sampled_from(ACTORS))
        def finalize_withdraw(self, k: int, who: str) -> None:
            """Anyone finalizes the payer's withdrawal once its delay passed: at most what is not claimed by then."""
            m = self.model[k]
            before = client.timestamp()  # the transaction's block comes after this one
            ok = attempt(client.transact, bs.functions.finalizeWithdraw(to_contract_channel_config(configs[k])),
                         acc[who])
            if ok:
                assert m.pending_at > 0 and client.timestamp() >= m.pending_at + DELAY, (
                    f"{who} finalized channel {k}'s withdrawal (pending {m.pending} since {m.pending_at}) at "
                    f"{client.timestamp()}")
                amount = min(m.pending, self._available(k))
                m.balance -= amount
                m.pending = m.pending_at = 0
            else:
                assert m.pending_at == 0 or before < m.pending_at + DELAY, (
                    f"channel {k}'s withdrawal (pending {m.pending} since {m.pending_at}) refused at {before}")

        @rule(k=st.sampled_from(CHANNELS), share=SHARES,
              who=st.sampled_from(("receiver", "receiver2", "authorizer", "stranger", "payer")))
        def refund(self, k: int, share: str, who: str) -> None:
            amount = share_of(share, self._available(k))
            ok = attempt(client.transact, bs.functions.refund(to_contract_channel_config(configs[k]), amount),
                         acc[who])
            rules = who in (RECEIVERS[k], "authorizer") and 0 < amount <= self._available(k)
            assert ok == rules, f"{who} refunding {amount} of channel {k} (available {self._available(k)}): {ok}"
            if ok:
                self._refunded(k, amount)

        @rule(k=st.sampled_from(CHANNELS), share=SHARES, back=st.sampled_from([0, 1]),
              signer=st.just("authorizer") | st.sampled_from(ACTORS), who=st.sampled_from(ACTORS))
        def refund_signed(self, k: int, share: str, back: int, signer: str, who: str) -> None:
            """A refund the ``signer`` signed for the current nonce (``back`` 1: the previous one, a replay)."""
            m = self.model[k]
            amount = share_of(share, self._available(k))
            nonce = max(0, m.nonce - back)
            signature = sign_refund(LocalAuthorizerSigner(acc[signer]), ids[k], amount, nonce, network)
            fn = bs.functions.refundWithSignature(to_contract_channel_config(configs[k]), amount, nonce,
                                                  bytes.fromhex(signature.removeprefix("0x")))
            ok = attempt(client.transact, fn, acc[who])
            rules = signer == "authorizer" and nonce == m.nonce and 0 < amount <= self._available(k)
            assert ok == rules, (f"a refund of {amount} of channel {k} signed by {signer} for nonce {nonce} (now "
                                 f"{m.nonce}, available {self._available(k)}), sent by {who}: {ok}")
            if ok:
                assert (nonce, amount) not in m.used_refunds
                m.used_refunds.add((nonce, amount))
                self._refunded(k, amount)

        def _refunded(self, k: int, amount: int) -> None:
            m = self.model[k]
            m.nonce += 1
            m.balance -= amount
            if m.pending <= amount:
                m.pending = m.pending_at = 0
            else:
                m.pending -= amount

        @rule(seconds=st.sampled_from([60, DELAY, DELAY + 1]))
        def wait(self, seconds: int) -> None:
            advance_time(client, seconds)

        # --- invariants -----------------------------------------------------------------------------------------
        @invariant()
        def hold(self) -> None:
            if not self.start:
                return
            for k in CHANNELS:
                m, got = self.model[k], channel_state(client, ids[k])
                assert got.total_claimed <= got.balance, f"channel {k} claimed {got.total_claimed} of {got.balance}"
                assert got.total_claimed <= m.highest_voucher, (
                    f"channel {k} claimed {got.total_claimed}, its payer signed at most {m.highest_voucher}")
                assert (got.balance, got.total_claimed) == (m.balance, m.claimed), (
                    f"channel {k} holds {got.balance} with {got.total_claimed} claimed, the rules say {m.balance} "
                    f"with {m.claimed}")
                assert (got.withdraw_amount, got.refund_nonce) == (m.pending, m.nonce), (
                    f"channel {k}'s pending withdrawal {got.withdraw_amount} (nonce {got.refund_nonce}), the rules "
                    f"say {m.pending} (nonce {m.nonce})")
            held = usdc.balance_of(BATCH_SETTLEMENT_ADDRESS) - self.outside
            owed = sum(m.balance for m in self.model) - sum(self.swept.values())
            assert held == owed, f"the contract holds {held} and owes {owed}"
            for r in RECEIVERS:
                got = usdc.balance_of(acc[r].address) - self.start[r]
                assert got == self.swept[r], f"{r} was paid {got}, its swept claims come to {self.swept[r]}"
            back = usdc.balance_of(acc["payer"].address) - self.start["payer"] + self.deposited
            expected = self.deposited - sum(m.balance for m in self.model)
            assert back == expected, f"the payer got back {back}, its withdrawals and refunds come to {expected}"

    return ChannelMachine
