// The UnixFS root CID that @ipld/unixfs (Kubo's layout: raw leaves, balanced, 174 links, CIDv1) gives a file:
//   node tests/support/unixfs_root.mjs FILE [CHUNK_BYTES]
import { readFile } from 'node:fs/promises'
import * as UnixFS from '@ipld/unixfs'
import { withMaxChunkSize } from '@ipld/unixfs/file/chunker/fixed'
import * as raw from 'multiformats/codecs/raw'

const [file, chunk] = process.argv.slice(2)
const settings = UnixFS.configure({
  fileChunkEncoder: raw, smallFileEncoder: raw, ...(chunk ? { chunker: withMaxChunkSize(Number(chunk)) } : {})
})
const { readable, writable } = new TransformStream({}, UnixFS.withCapacity(1 << 30))
const writer = UnixFS.createWriter({ writable, settings })
const drained = (async () => { for await (const _ of readable) { /* blocks */ } })()
const fileWriter = UnixFS.createFileWriter(writer)
await fileWriter.write(await readFile(file))
const link = await fileWriter.close()
await writer.close()
await drained
console.log(link.cid.toString())
