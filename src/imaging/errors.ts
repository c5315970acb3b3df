/**
 * Why an upload could not be turned into an image. The HTTP layer maps the code to a status
 * (unsupported_type → 415, too_large → 413, corrupt → 400, unsupported_encoding → 422), and the
 * message is shown to the person who uploaded the file, so it says what is wrong in plain
 * words and never contains patient data.
 */
export type ImageDecodeErrorCode = 'unsupported_type' | 'corrupt' | 'too_large' | 'unsupported_encoding';

export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';
  constructor(
    public readonly code: ImageDecodeErrorCode,
    message: string,
    /**
     * True when the file ran out of time rather than failed: a busy machine can cause that, so a
     * stored scan's render is tried again later instead of being marked undecodable for good.
     */
    public readonly transient = false,
  ) {
    super(message);
  }
}

/**
 * How an analysis ends on an image that cannot be decoded, wherever the decode ran (the job's
 * render, the analyzer thread's decode of an original): the reason shown on the failed scan, and
 * whether the failure is final. A time-out (a busy machine) is not: the job is tried again.
 */
export function undecodableImage(err: ImageDecodeError): { message: string; permanent: boolean } {
  return { message: `The image could not be decoded: ${err.message}`, permanent: !err.transient };
}

/** Libraries here throw strings, numbers (emscripten C++ exceptions) and plain objects as well as Errors. */
export function describeThrown(thrown: unknown): string {
  if (thrown instanceof Error) return thrown.message;
  if (typeof thrown === 'string') return thrown;
  if (typeof thrown === 'object' && thrown !== null && 'exception' in thrown) {
    return describeThrown((thrown).exception);
  }
  return String(thrown);
}

function megapixels(pixels: number): string {
  return `${(pixels / 1_000_000).toFixed(1)} megapixels`;
}

export function tooLarge(width: number, height: number, frames: number, maxPixels: number): ImageDecodeError {
  const total = width * height * frames;
  const size = frames > 1 ? `${width}x${height} pixels x ${frames} frames` : `${width}x${height} pixels`;
  return new ImageDecodeError(
    'too_large',
    `The image is ${size} (${megapixels(total)}); the limit is ${megapixels(maxPixels)}.`,
  );
}
