/**
 * DICOM RLE Lossless (PS3.5 Annex G). A frame is a 64-byte header (segment count and up to 15
 * segment offsets, little endian) followed by PackBits-compressed segments: one per byte of
 * each sample, most significant byte first, each segment holding that byte for every pixel.
 *
 * Returns the samples as little endian words, pixel-interleaved, so they read like native data.
 */
export function decodeRleFrame(
  frame: Uint8Array,
  opts: { rows: number; columns: number; samplesPerPixel: number; bytesPerSample: number },
): Uint8Array {
  const { rows, columns, samplesPerPixel, bytesPerSample } = opts;
  const pixels = rows * columns;
  const expectedSegments = samplesPerPixel * bytesPerSample;
  if (frame.length < 64) throw new Error('the RLE header is incomplete');
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const segmentCount = view.getUint32(0, true);
  if (segmentCount !== expectedSegments) {
    throw new Error(`the RLE data has ${segmentCount} segments where the image needs ${expectedSegments}`);
  }
  const offsets: number[] = [];
  for (let i = 0; i < segmentCount; i++) offsets.push(view.getUint32(4 + i * 4, true));
  const out = new Uint8Array(pixels * expectedSegments);
  const segment = new Uint8Array(pixels);
  for (let s = 0; s < segmentCount; s++) {
    const start = offsets[s]!;
    const end = s + 1 < segmentCount ? offsets[s + 1]! : frame.length;
    if (start < 64 || end > frame.length || end < start) throw new Error('an RLE segment offset points outside the data');
    const produced = unpackBits(frame, start, end, segment);
    if (produced < pixels) throw new Error('an RLE segment holds fewer pixels than the image needs');
    // Segment order is sample-major, MSB first; write each byte to its little endian position.
    const sample = Math.floor(s / bytesPerSample);
    const byte = bytesPerSample - 1 - (s % bytesPerSample);
    const stride = expectedSegments;
    let target = sample * bytesPerSample + byte;
    for (let p = 0; p < pixels; p++, target += stride) out[target] = segment[p]!;
  }
  return out;
}

/** PackBits as PS3.5 G.3.1 defines it; stops when the output is full. Returns bytes written. */
function unpackBits(input: Uint8Array, start: number, end: number, output: Uint8Array): number {
  let i = start;
  let o = 0;
  const limit = output.length;
  while (i < end && o < limit) {
    const header = input[i++]!;
    if (header < 128) {
      const count = Math.min(header + 1, end - i, limit - o);
      output.set(input.subarray(i, i + count), o);
      i += header + 1;
      o += count;
    } else if (header > 128) {
      if (i >= end) break;
      const count = Math.min(257 - header, limit - o);
      output.fill(input[i++]!, o, o + count);
      o += count;
    }
    // 128 is a no-op.
  }
  return o;
}
