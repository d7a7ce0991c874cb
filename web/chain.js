// Entry point bundled by esbuild at `make setup` into static/app/vendor/chain.js: the ABI encoding, event and
// revert decoding and EIP-712 helpers the page needs to talk to the contracts through the wallet (npm viem).
export {
  decodeErrorResult,
  decodeEventLog,
  decodeFunctionResult,
  encodeAbiParameters,
  encodeFunctionData,
  encodePacked,
  getAddress,
  keccak256,
  parseSignature,
} from 'viem';
