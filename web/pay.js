// Entry point bundled by esbuild at `make setup` into static/app/vendor/x402-pay.js: the x402 client library
// (npm @x402/fetch, @x402/core, @x402/evm) paying with the wallet behind an EIP-1193 provider.
import { wrapFetchWithPayment } from '@x402/fetch';
import { x402Client } from '@x402/core/client';
import { registerExactEvmScheme } from '@x402/evm/exact/client';
import { BatchSettlementEvmScheme } from '@x402/evm/batch-settlement/client';

// A fetch that pays a node's 402 with the wallet behind an EIP-1193 provider (eth_signTypedData_v4), in the node's
// asset on its network only, at most `maxAmount` atomic units per payment (the library's spend controls), with the
// `exact` scheme (one EIP-3009 transfer a call) or `batch-settlement` (one channel deposit signed as an EIP-3009
// authorization, then a voucher a call: both typed-data signatures of the same wallet).
export function paidFetch(provider, address, { network, asset, maxAmount, scheme = 'exact' }) {
  const signer = {
    address,
    async signTypedData({ domain, types, primaryType, message }) {
      const typed = { domain, types: { EIP712Domain: domainType(domain), ...types }, primaryType, message };
      return provider.request({ method: 'eth_signTypedData_v4', params: [address, JSON.stringify(typed, big)] });
    },
  };
  const client = new x402Client();
  if (scheme === 'batch-settlement') client.register(network, new BatchSettlementEvmScheme(signer));
  else registerExactEvmScheme(client, { signer, networks: [network] });
  client.setSpendControls({ allowedAssets: [{ network, asset, maxAmountPerPayment: String(maxAmount) }] });
  return wrapFetchWithPayment(globalThis.fetch.bind(globalThis), client);
}
const big = (_k, v) => (typeof v === 'bigint' ? v.toString() : v);
function domainType(d) {
  return [['name', 'string'], ['version', 'string'], ['chainId', 'uint256'], ['verifyingContract', 'address']]
    .filter(([k]) => d[k] !== undefined).map(([name, type]) => ({ name, type }));
}
