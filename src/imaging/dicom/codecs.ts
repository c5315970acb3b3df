import { createRequire } from 'node:module';
import { describeThrown } from '../errors.js';

/**
 * The compressed-pixel decoders: emscripten WebAssembly builds of OpenJPEG, CharLS and
 * libjpeg-turbo from the Cornerstone project, DCMTK's 12-bit IJG JPEG through dcmjs-codecs
 * (lossy JPEG Extended, which libjpeg-turbo's 8-bit build cannot read), and the pure-JS JPEG
 * Lossless decoder.
 *
 * Each WASM package exports a CommonJS factory (`./decodewasmjs`) that returns a promise of the
 * module; in Node it loads its .wasm next to itself with fs, so nothing needs configuring.
 * Modules are created once and reused. A decoder that throws may leave the module's heap in a
 * bad state, so after any failure the module is dropped and the next call builds a fresh one.
 */

const require = createRequire(import.meta.url);

interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
}

interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  getFrameInfo(): FrameInfo;
  delete(): void;
}

interface JpegLsDecoder extends WasmDecoder {
  getInterleaveMode(): number;
}

interface EmscriptenOptions {
  print: (line: string) => void;
  printErr: (line: string) => void;
}

type Factory<M> = (options: EmscriptenOptions) => Promise<M>;

class WasmCodec<M> {
  private module: Promise<M> | undefined;
  /** What the C library printed during the current decode, for error messages. */
  readonly messages: string[] = [];

  constructor(private readonly load: () => Factory<M>) {}

  get(): Promise<M> {
    if (!this.module) {
      const record = (line: string) => {
        if (this.messages.length < 20) this.messages.push(line);
      };
      this.module = this.load()({ print: record, printErr: record });
      this.module.catch(() => {
        this.module = undefined;
      });
    }
    return this.module;
  }

  discard(): void {
    this.module = undefined;
  }

  errors(): string {
    return this.messages
      .filter((line) => /error|fail|invalid|corrupt|premature|short/i.test(line))
      .map((line) => line.replace(/^\[ERROR\]\s*/, '').trim())
      .join('; ');
  }
}

const openJpeg = new WasmCodec<{ J2KDecoder: new () => WasmDecoder }>(() =>
  require('@cornerstonejs/codec-openjpeg/decodewasmjs') as Factory<{ J2KDecoder: new () => WasmDecoder }>,
);
const charLs = new WasmCodec<{ JpegLSDecoder: new () => JpegLsDecoder }>(() =>
  require('@cornerstonejs/codec-charls/decodewasmjs') as Factory<{ JpegLSDecoder: new () => JpegLsDecoder }>,
);
const libJpegTurbo = new WasmCodec<{ JPEGDecoder: new () => WasmDecoder }>(() =>
  require('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs') as Factory<{ JPEGDecoder: new () => WasmDecoder }>,
);

/** Decoded samples, little endian, `bytesPerSample` each, pixel-interleaved unless `planar`. */
export interface DecodedFrame {
  data: Uint8Array;
  width: number;
  height: number;
  components: number;
  bitsPerSample: number;
  bytesPerSample: 1 | 2;
  planar: boolean;
}

export class CodecError extends Error {
  override name = 'CodecError';
}

async function runWasm<M, D extends WasmDecoder>(
  codec: WasmCodec<M>,
  create: (module: M) => D,
  encoded: Uint8Array,
  finish: (decoder: D, info: FrameInfo) => { planar: boolean },
): Promise<DecodedFrame> {
  const module = await codec.get();
  codec.messages.length = 0;
  let decoder: D | undefined;
  try {
    decoder = create(module);
    decoder.getEncodedBuffer(encoded.length).set(encoded);
    decoder.decode();
    const info = decoder.getFrameInfo();
    const decoded = decoder.getDecodedBuffer();
    if (info.width === 0 || info.height === 0 || decoded.length === 0) {
      throw new CodecError(codec.errors() || 'the decoder produced no image');
    }
    const bytesPerSample = info.bitsPerSample > 8 ? 2 : 1;
    const expected = info.width * info.height * info.componentCount * bytesPerSample;
    if (decoded.length < expected) throw new CodecError('the decoder produced fewer pixels than the image needs');
    const { planar } = finish(decoder, info);
    return {
      // Copied out: the view points into the WASM heap, which the next decode reuses.
      data: Uint8Array.prototype.slice.call(decoded, 0, expected),
      width: info.width,
      height: info.height,
      components: info.componentCount,
      bitsPerSample: info.bitsPerSample,
      bytesPerSample,
      planar,
    };
  } catch (thrown) {
    codec.discard();
    if (thrown instanceof CodecError) throw thrown;
    // emscripten surfaces C++ exceptions as bare numbers; the library's log says more.
    const logged = codec.errors();
    throw new CodecError(logged || (typeof thrown === 'number' ? 'the decoder rejected the data' : describeThrown(thrown)));
  } finally {
    try {
      decoder?.delete();
    } catch {
      // The module is already discarded if delete fails.
    }
  }
}

export function decodeJpeg2000(encoded: Uint8Array): Promise<DecodedFrame> {
  // OpenJPEG applies the inverse multi-component transform itself and writes interleaved samples.
  return runWasm(openJpeg, (m) => new m.J2KDecoder(), encoded, () => ({ planar: false }));
}

export function decodeJpegLs(encoded: Uint8Array): Promise<DecodedFrame> {
  // CharLS keeps the stream's layout: interleave mode 0 ("none") comes out as separate planes.
  return runWasm(charLs, (m) => new m.JpegLSDecoder(), encoded, (decoder, info) => ({
    planar: info.componentCount > 1 && decoder.getInterleaveMode() === 0,
  }));
}

export function decodeJpegBaseline(encoded: Uint8Array): Promise<DecodedFrame> {
  // libjpeg-turbo converts YCbCr to RGB for three-component streams, as libjpeg decides from
  // the JFIF/Adobe markers and component ids.
  return runWasm(libJpegTurbo, (m) => new m.JPEGDecoder(), encoded, () => ({ planar: false }));
}

interface LosslessDecoder {
  decode(buffer: ArrayBuffer, offset?: number, length?: number): Uint8Array | Uint16Array;
}
let losslessModule: { Decoder: new () => LosslessDecoder } | undefined;

export function decodeJpegLossless(
  encoded: Uint8Array,
  header: { width: number; height: number; components: number; precision: number },
): DecodedFrame {
  losslessModule ??= require('jpeg-lossless-decoder-js') as { Decoder: new () => LosslessDecoder };
  let output: Uint8Array | Uint16Array;
  try {
    const copy = Uint8Array.prototype.slice.call(encoded);
    output = new losslessModule.Decoder().decode(copy.buffer, 0, copy.length);
  } catch (thrown) {
    throw new CodecError(describeThrown(thrown));
  }
  const bytesPerSample = header.precision > 8 ? 2 : 1;
  const expected = header.width * header.height * header.components * bytesPerSample;
  const data = new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
  if (data.length < expected) throw new CodecError('the decoder produced fewer pixels than the image needs');
  return {
    data: data.slice(0, expected),
    width: header.width,
    height: header.height,
    components: header.components,
    bitsPerSample: header.precision,
    bytesPerSample,
    planar: false,
  };
}

interface DcmjsCodecsContext {
  getDecodedBuffer(): Uint8Array | undefined;
}
interface DcmjsCodecs {
  NativeCodecs: {
    initializeAsync(opts?: { logCodecsInfo?: boolean; logCodecsTrace?: boolean }): Promise<void>;
    decodeJpeg(context: DcmjsCodecsContext, parameters?: { convertColorspaceToRgb?: boolean }): DcmjsCodecsContext;
  };
  Context: new (attrs: Record<string, unknown>) => DcmjsCodecsContext;
}
let dcmjsCodecs: Promise<DcmjsCodecs> | undefined;

function loadDcmjsCodecs(): Promise<DcmjsCodecs> {
  dcmjsCodecs ??= (async () => {
    const codecs = require('dcmjs-codecs') as DcmjsCodecs;
    await codecs.NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false });
    return codecs;
  })();
  dcmjsCodecs.catch(() => {
    dcmjsCodecs = undefined;
  });
  return dcmjsCodecs;
}

/** Lossy JPEG with 12-bit samples (DICOM JPEG Extended, processes 2 and 4); grayscale. */
export async function decodeJpeg12(
  encoded: Uint8Array,
  header: { width: number; height: number; components: number; precision: number },
  image: { bitsStored: number; pixelRepresentation: number },
): Promise<DecodedFrame> {
  const { NativeCodecs, Context } = await loadDcmjsCodecs();
  let decoded: Uint8Array | undefined;
  try {
    const context = new Context({
      width: header.width,
      height: header.height,
      bitsAllocated: 16,
      bitsStored: Math.min(image.bitsStored, header.precision),
      samplesPerPixel: header.components,
      pixelRepresentation: image.pixelRepresentation,
      planarConfiguration: 0,
      photometricInterpretation: 'MONOCHROME2',
      encodedBuffer: encoded,
    });
    decoded = NativeCodecs.decodeJpeg(context).getDecodedBuffer();
  } catch (thrown) {
    throw new CodecError(typeof thrown === 'number' ? 'the decoder rejected the data' : describeThrown(thrown));
  }
  const expected = header.width * header.height * header.components * 2;
  if (!decoded || decoded.length < expected) throw new CodecError('the decoder produced fewer pixels than the image needs');
  return {
    data: Uint8Array.prototype.slice.call(decoded, 0, expected),
    width: header.width,
    height: header.height,
    components: header.components,
    bitsPerSample: header.precision,
    bytesPerSample: 2,
    planar: false,
  };
}
