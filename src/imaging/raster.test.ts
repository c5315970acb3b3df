import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { checkImage, decodeUpload, ImageDecodeError, inspectRaster } from './index.js';
import { imageFixture } from './testing/paths.js';

const TIMEOUT = { timeout: 10_000 };

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A hand-built PNG, so the header can claim what the data does not hold. */
function png(width: number, height: number, bitDepth: number, colourType: number, raw: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

async function rejectsWith(bytes: Buffer, code: ImageDecodeError['code'], message?: RegExp, maxPixels?: number) {
  await assert.rejects(decodeUpload(bytes, maxPixels === undefined ? {} : { maxPixels }), (error: unknown) => {
    assert.ok(error instanceof ImageDecodeError, `expected ImageDecodeError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

describe('decodeUpload: JPEG and PNG', () => {
  it('turns a colour JPEG into an 8-bit RGB PNG of the same size', TIMEOUT, async () => {
    for (const name of ['brain-glioma-1.jpg', 'brain-notumor-1.jpg', 'chest-normal-1.jpeg', 'chest-bacterial-1.jpeg']) {
      const result = await decodeUpload(imageFixture(name));
      assert.equal(result.kind, 'jpeg');
      assert.equal(result.dicom, undefined);
      assert.deepEqual([result.width, result.height], [224, 224]);
      const meta = await sharp(result.png).metadata();
      assert.deepEqual([meta.format, meta.depth, meta.channels, meta.width], ['png', 'uchar', 3, 224], name);
    }
  });

  it('keeps a grayscale PNG grayscale, with the same pixels', TIMEOUT, async () => {
    const input = imageFixture('chest-normal-1.png');
    const result = await decodeUpload(input);
    assert.equal(result.kind, 'png');
    const meta = await sharp(result.png).metadata();
    assert.deepEqual([meta.depth, meta.channels], ['uchar', 1]);
    const before = await sharp(input).extractChannel(0).raw().toBuffer();
    const after = await sharp(result.png).extractChannel(0).raw().toBuffer();
    assert.ok(before.equals(after));
  });

  it('applies EXIF orientation', TIMEOUT, async () => {
    // 40 wide, 20 high, stored with "rotate 90° clockwise to display": displays 20 wide, 40 high.
    const stored = await sharp({ create: { width: 40, height: 20, channels: 3, background: '#808080' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const result = await decodeUpload(stored);
    assert.deepEqual([result.width, result.height], [20, 40]);
  });

  it('scales 16-bit PNGs to 8 bits rather than truncating them', TIMEOUT, async () => {
    const raw = Buffer.alloc(3 * (1 + 4 * 2));
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 4; x++) raw.writeUInt16BE(x === 3 ? 65535 : x * 20000, y * 9 + 1 + x * 2);
    }
    const result = await decodeUpload(png(4, 3, 16, 0, raw));
    const meta = await sharp(result.png).metadata();
    assert.deepEqual([meta.depth, meta.channels], ['uchar', 1]);
    const data = await sharp(result.png).extractChannel(0).raw().toBuffer();
    const expected = [0, 20000, 40000, 65535].map((v) => (v * 255) / 65535);
    [...data.subarray(0, 4)].forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) <= 1, `${value} vs ${expected[i]}`));
  });

  it('flattens transparency onto black and outputs no alpha channel', TIMEOUT, async () => {
    const rgba = await sharp({ create: { width: 2, height: 2, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0.5 } } })
      .png()
      .toBuffer();
    const result = await decodeUpload(rgba);
    const { data, info } = await sharp(result.png).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.channels, 3);
    assert.deepEqual([...data.subarray(0, 3)], [128, 0, 0]);
  });

  it('answers corrupt for a truncated JPEG, in words a person understands', TIMEOUT, async () => {
    const jpeg = imageFixture('chest-normal-1.jpeg');
    await rejectsWith(jpeg.subarray(0, Math.floor(jpeg.length / 2)), 'corrupt', /^The JPEG file is truncated or corrupt: /);
    await rejectsWith(jpeg.subarray(0, 40), 'corrupt', /^The JPEG file is truncated or corrupt/);
    // Cut inside its header, libvips wraps its words ("Input buffer has corrupt header: VipsJpeg: ..."):
    // the person reads only what is wrong.
    await rejectsWith(jpeg.subarray(0, 300), 'corrupt', /^The JPEG file is truncated or corrupt: premature end of JPEG image\.$/);
  });

  it('answers corrupt for a truncated or garbled PNG', TIMEOUT, async () => {
    const input = imageFixture('chest-normal-1.png');
    await rejectsWith(input.subarray(0, Math.floor(input.length / 2)), 'corrupt', /^The PNG file is truncated or corrupt/);
    const garbled = Buffer.from(input);
    garbled.fill(0x55, 100, 400);
    await rejectsWith(garbled, 'corrupt', /^The PNG file/);
  });

  it('answers corrupt for bytes that only start like a JPEG', TIMEOUT, async () => {
    await rejectsWith(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(500, 7)]), 'corrupt', /JPEG/);
  });

  it('refuses an image bomb from its header, before decoding', TIMEOUT, async () => {
    // 100 000 x 100 000 declared, a few bytes of data: must fail fast on the header alone.
    const started = Date.now();
    await rejectsWith(png(100_000, 100_000, 8, 0, Buffer.alloc(10)), 'too_large', /100000x100000 pixels/);
    const jpeg = Buffer.from(imageFixture('chest-normal-1.jpeg'));
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
    jpeg.writeUInt16BE(60_000, sof + 5);
    jpeg.writeUInt16BE(60_000, sof + 7);
    await rejectsWith(jpeg, 'too_large', /limit is 50\.0 megapixels/);
    assert.ok(Date.now() - started < 2000);
  });

  it('honours maxPixels exactly', TIMEOUT, async () => {
    const jpeg = imageFixture('brain-glioma-1.jpg');
    await rejectsWith(jpeg, 'too_large', undefined, 224 * 224 - 1);
    const result = await decodeUpload(jpeg, { maxPixels: 224 * 224 });
    assert.equal(result.width, 224);
  });

  it('answers unsupported_type for anything that is not JPEG, PNG or DICOM', TIMEOUT, async () => {
    await rejectsWith(Buffer.from('name,diagnosis\nDoe,none\n'), 'unsupported_type', /not a JPEG, PNG or DICOM/);
    await rejectsWith(await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } }).gif().toBuffer(), 'unsupported_type');
    await rejectsWith(Buffer.alloc(0), 'unsupported_type');
  });
});

describe('inspectRaster: the header checks of a large JPEG or PNG, from its first bytes', () => {
  /** Noise, so the file is large: a JPEG of several MB whose pixels come long after its header. */
  async function largeJpeg(orientation?: number): Promise<Buffer> {
    const data = Buffer.alloc(1200 * 800 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (Math.imul(i, 2654435761) >>> 24) & 0xff;
    const image = sharp(data, { raw: { width: 1200, height: 800, channels: 3 } }).jpeg({ quality: 100 });
    return (orientation ? image.withMetadata({ orientation }) : image).toBuffer();
  }

  it('answers the size the image renders to, EXIF orientation applied, as decoding does', async () => {
    for (const orientation of [undefined, 6]) {
      const file = await largeJpeg(orientation);
      const head = file.subarray(0, 64 * 1024);
      const inspected = await inspectRaster(head, 'jpeg', 50_000_000);
      const decoded = await decodeUpload(file);
      assert.deepEqual(inspected, { width: decoded.width, height: decoded.height });
    }
    const fixture = imageFixture('chest-normal-1.png');
    assert.deepEqual(await inspectRaster(fixture.subarray(0, 256), 'png', 50_000_000), await sharp(fixture).metadata().then((m) => ({ width: m.width, height: m.height })));
  });

  it('refuses from the header what decoding refuses: too many pixels, another format, no readable header', async () => {
    const head = (await largeJpeg()).subarray(0, 64 * 1024);
    await assert.rejects(inspectRaster(head, 'jpeg', 1000), (err: unknown) => err instanceof ImageDecodeError && err.code === 'too_large');
    await assert.rejects(inspectRaster(head, 'png', 50_000_000), (err: unknown) => err instanceof ImageDecodeError && err.code === 'corrupt');
    // A header cut before its size (what a header longer than the bytes at hand looks like).
    await assert.rejects(inspectRaster(head.subarray(0, 100), 'jpeg', 50_000_000), (err: unknown) =>
      err instanceof ImageDecodeError && err.code === 'corrupt' && /truncated or corrupt/.test(err.message),
    );
  });
});

describe('checkImage: the upload check of a whole JPEG or PNG, nothing encoded', () => {
  /** What the full decode (the upload's until 2026-12-06) answers: its message, or null when it decodes. */
  const decodeOutcome = (bytes: Buffer) =>
    decodeUpload(bytes).then(
      () => null,
      (err: unknown) => (err instanceof ImageDecodeError ? `${err.code}: ${err.message}` : `not an ImageDecodeError: ${String(err)}`),
    );
  const checkOutcome = (bytes: Buffer) =>
    checkImage(bytes).then(
      () => null,
      (err: unknown) => (err instanceof ImageDecodeError ? `${err.code}: ${err.message}` : `not an ImageDecodeError: ${String(err)}`),
    );

  it('refuses every truncated or damaged file the full decode refuses, with the same message, and passes the rest', TIMEOUT, async () => {
    const jpeg = imageFixture('brain-glioma-1.jpg');
    const grey = imageFixture('chest-normal-1.png');
    const rgbPng = await sharp(jpeg).png().toBuffer();
    let refused = 0;
    for (const [name, file] of [['JPEG', jpeg], ['grey PNG', grey], ['RGB PNG', rgbPng]] as const) {
      const variants: Array<[string, Buffer]> = [['whole', file]];
      for (const cut of [0.3, 0.6, 0.9, 0.98]) variants.push([`cut at ${cut}`, file.subarray(0, Math.floor(file.length * cut))]);
      variants.push(['last 2 bytes missing', file.subarray(0, file.length - 2)]);
      const flipped = Buffer.from(file);
      flipped[Math.floor(file.length * 0.6)]! ^= 0xff;
      variants.push(['a byte flipped', flipped]);
      for (const [what, bytes] of variants) {
        const expected = await decodeOutcome(bytes);
        assert.equal(await checkOutcome(bytes), expected, `${name}, ${what}`);
        if (expected !== null) refused++;
      }
      assert.equal(await checkOutcome(file), null, `${name} whole passes`);
    }
    assert.ok(refused >= 12, `only ${refused} damaged variants were refused: the cases test too little`);
  });

  it('gives the size of the image as displayed: an EXIF rotation by a quarter swaps the sides', TIMEOUT, async () => {
    const wide = await sharp({ create: { width: 40, height: 20, channels: 3, background: '#808080' } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const checked = await checkImage(wide);
    const decoded = await decodeUpload(wide);
    assert.deepEqual([checked.kind, checked.width, checked.height], ['jpeg', decoded.width, decoded.height]);
    assert.deepEqual([checked.width, checked.height], [20, 40]);
  });
});
