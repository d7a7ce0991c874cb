// A local IPFS node for proofmarket's pinning: Helia (@helia/utils' Helia, the core of every Helia node) on a
// filesystem blockstore and datastore, offline (no libp2p: its WebRTC transport needs a native download this
// machine cannot make), serving the subset of Kubo's RPC API that proofmarket's pinner uses, and a trustless
// gateway, so that anyone can fetch pinned blocks by CID with the proofmarket node stopped.
//
//   node scripts/ipfs_node.mjs REPO [--port 5001] [--host 127.0.0.1]
//
//   POST /api/v0/id                      {"ID", "AgentVersion"}
//   POST /api/v0/dag/import              multipart CAR file; blocks checked against their CIDs, roots pinned;
//                                        NDJSON {"Root": {"Cid": {"/": cid}, "PinErrorMsg": ""}} per root
//   POST /api/v0/pin/ls?arg=CID          {"Keys": {cid: {"Type": "recursive"}}}, or 500 "not pinned"
//   POST /api/v0/pin/rm?arg=CID          {"Pins": [cid]}
//   POST /api/v0/block/get?arg=CID       the block's bytes
//   GET  /ipfs/CID?format=raw            the block's bytes (trustless gateway: application/vnd.ipld.raw; also
//                                        with Accept: application/vnd.ipld.raw)
//   GET  /ipfs/CID                       the file: a UnixFS DAG's leaves put together in order (ipfs-unixfs-exporter)
//
// Prints "ipfs node listening on http://HOST:PORT" once it serves.

// Node 20 has no Promise.withResolvers (Node 22 does); Helia's queues use it
Promise.withResolvers ??= function () {
  let resolve, reject
  const promise = new Promise((a, b) => { resolve = a; reject = b })
  return { promise, resolve, reject }
}

import http from 'node:http'
import { Helia } from '@helia/utils'
import { car } from '@helia/car'
import { CarReader } from '@ipld/car'
import { exporter } from 'ipfs-unixfs-exporter'
import { FsBlockstore } from 'blockstore-fs'
import { FsDatastore } from 'datastore-fs'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const MAX_BODY = 1024 * 1024 * 1024
const args = process.argv.slice(2)
const repo = args[0]
if (!repo) {
  console.error('usage: node scripts/ipfs_node.mjs REPO [--port 5001] [--host 127.0.0.1]')
  process.exit(2)
}
const option = (name, fallback) => { const i = args.indexOf(name); return i > 0 ? args[i + 1] : fallback }
const port = Number(option('--port', '5001'))
const host = option('--host', '127.0.0.1')

const blockstore = new FsBlockstore(`${repo}/blocks`)
const datastore = new FsDatastore(`${repo}/datastore`)
await blockstore.open()
await datastore.open()
const offline = {
  status: 'started', start: async () => {}, stop: async () => {}, services: {}, getPeers: () => [],
  addEventListener () {}, removeEventListener () {}
}
const helia = new Helia({ libp2p: offline, blockstore, datastore, blockBrokers: [], routers: [] })
await helia.start()

function send (res, status, body, type = 'application/json') {
  const data = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': type })
  res.end(data)
}

function fail (res, status, message) {
  send(res, status, { Message: message, Code: 0, Type: 'error' })
}

async function body (req) {
  const chunks = []
  let size = 0
  for await (const chunk of req) {
    size += chunk.length
    if (size > MAX_BODY) throw new Error('the request body is too large')
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

// the first file part of a multipart/form-data body
function filePart (req, data) {
  const match = /boundary=(?:"([^"]+)"|([^;]+))/.exec(req.headers['content-type'] || '')
  if (!match) return data // a raw body is taken as the file
  const boundary = Buffer.from(`--${match[1] || match[2]}`)
  const start = data.indexOf(boundary)
  const headersEnd = data.indexOf('\r\n\r\n', start)
  const end = data.indexOf(Buffer.concat([Buffer.from('\r\n'), boundary]), headersEnd)
  if (start < 0 || headersEnd < 0 || end < 0) throw new Error('the multipart body has no file part')
  return data.subarray(headersEnd + 4, end)
}

function cidArg (url) {
  const arg = url.searchParams.get('arg')
  if (!arg) throw new Error('argument "arg" is required')
  return CID.parse(arg.replace(/^\/ipfs\//, ''))
}

async function block (cid) {
  if (!(await helia.blockstore.has(cid))) return null
  return helia.blockstore.get(cid, { offline: true })
}

async function dagImport (req, res) {
  const reader = await CarReader.fromBytes(filePart(req, await body(req)))
  for await (const { cid, bytes } of reader.blocks()) { // a block is stored only under its own hash
    if (cid.multihash.code !== sha256.code) throw new Error(`block ${cid}: only sha2-256 blocks are taken`)
    const digest = await sha256.digest(bytes)
    if (Buffer.compare(Buffer.from(digest.digest), Buffer.from(cid.multihash.digest)) !== 0) {
      throw new Error(`block ${cid}: its bytes do not hash to its CID`)
    }
  }
  await car(helia).import(reader)
  const lines = []
  for (const root of await reader.getRoots()) {
    let error = ''
    try {
      for await (const _ of helia.pins.add(root)) { /* walks the DAG: every block is here */ }
    } catch (err) {
      if (!/already pinned/i.test(String(err.message))) error = String(err.message)
    }
    lines.push(JSON.stringify({ Root: { Cid: { '/': root.toString() }, PinErrorMsg: error } }))
  }
  send(res, 200, lines.join('\n') + '\n', 'application/x-ndjson')
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${host}:${port}`)
  try {
    if (url.pathname.startsWith('/api/v0/') && req.method !== 'POST') return fail(res, 405, 'the RPC API takes POST')
    switch (url.pathname) {
      case '/api/v0/id':
        return send(res, 200, { ID: 'helia-offline', AgentVersion: 'helia/@helia/utils proofmarket-ipfs-node' })
      case '/api/v0/dag/import':
        return await dagImport(req, res)
      case '/api/v0/pin/ls': {
        const cid = cidArg(url)
        if (!(await helia.pins.isPinned(cid))) return fail(res, 500, `path '${cid}' is not pinned`)
        return send(res, 200, { Keys: { [cid.toString()]: { Type: 'recursive' } } })
      }
      case '/api/v0/pin/rm': {
        const cid = cidArg(url)
        for await (const _ of helia.pins.rm(cid)) { /* unpinned */ }
        return send(res, 200, { Pins: [cid.toString()] })
      }
      case '/api/v0/block/get': {
        const data = await block(cidArg(url))
        return data ? send(res, 200, data, 'application/octet-stream') : fail(res, 500, 'block not found')
      }
    }
    if (url.pathname.startsWith('/ipfs/') && (req.method === 'GET' || req.method === 'HEAD')) {
      const cid = CID.parse(url.pathname.slice('/ipfs/'.length).split('/')[0])
      const data = await block(cid)
      if (!data) return send(res, 404, 'not found', 'text/plain')
      const immutable = { 'Cache-Control': 'public, max-age=29030400, immutable', 'X-Ipfs-Roots': cid.toString() }
      const raw = url.searchParams.get('format') === 'raw' || /application\/vnd\.ipld\.raw/.test(req.headers.accept || '')
      if (raw) {
        res.writeHead(200, { 'Content-Type': 'application/vnd.ipld.raw', ...immutable })
        return res.end(req.method === 'HEAD' ? undefined : data)
      }
      const entry = await exporter(cid, helia.blockstore, { offline: true })
      if (entry.type !== 'file' && entry.type !== 'raw') return send(res, 501, 'only files are served', 'text/plain')
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(entry.size), ...immutable })
      if (req.method === 'HEAD') return res.end()
      for await (const piece of entry.content()) res.write(piece)
      return res.end()
    }
    return fail(res, 404, `no route ${url.pathname}`)
  } catch (err) {
    return fail(res, 500, String(err && err.message ? err.message : err))
  }
})

server.listen(port, host, () => console.log(`ipfs node listening on http://${host}:${server.address().port}`))
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    server.close()
    await helia.stop()
    process.exit(0)
  })
}
