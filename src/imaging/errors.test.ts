import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ImageDecodeError, undecodableImage } from './errors.js';

test('an image that cannot be decoded fails its analysis for good, saying why; one that ran out of time is tried again', () => {
  assert.deepEqual(undecodableImage(new ImageDecodeError('corrupt', 'the JPEG data ends early (truncated file).')), {
    message: 'The image could not be decoded: the JPEG data ends early (truncated file).',
    permanent: true,
  });
  assert.equal(undecodableImage(new ImageDecodeError('unsupported_encoding', 'RLE Lossless is not supported.')).permanent, true);
  assert.deepEqual(undecodableImage(new ImageDecodeError('corrupt', 'The image could not be decoded within 10 seconds', true)), {
    message: 'The image could not be decoded: The image could not be decoded within 10 seconds',
    permanent: false,
  });
});
