import type { DataSet, Element } from 'dicom-parser';

/**
 * The bytes of the first frame of encapsulated pixel data (PS3.5 A.4). Fragments are the
 * items of the pixel data element; the Basic Offset Table (first item), when not empty, says
 * where each frame's fragments begin.
 */
export function firstEncapsulatedFrame(
  dataSet: DataSet,
  pixelData: Element,
  opts: { numberOfFrames: number; oneFragmentPerFrame: boolean },
): Uint8Array {
  const fragments = pixelData.fragments ?? [];
  if (fragments.length === 0) throw new Error('the compressed pixel data has no fragments');
  const bytes = dataSet.byteArray;
  for (const fragment of fragments) {
    if (fragment.position + fragment.length > bytes.length) {
      throw new TruncatedError(
        `the compressed pixel data is truncated: a fragment needs ${fragment.length} bytes but only ${Math.max(
          0,
          bytes.length - fragment.position,
        )} remain`,
      );
    }
  }
  const slice = (index: number) => {
    const fragment = fragments[index]!;
    return bytes.subarray(fragment.position, fragment.position + fragment.length);
  };
  const concat = (indexes: number[]) =>
    indexes.length === 1 ? slice(indexes[0]!) : Buffer.concat(indexes.map((i) => slice(i)));
  const all = fragments.map((_, i) => i);

  if (opts.numberOfFrames <= 1) return concat(all);

  const offsets = frameOffsets(dataSet, pixelData);
  if (offsets.length > 0) {
    const start = offsets[0]!;
    const end = offsets[1] ?? Number.POSITIVE_INFINITY;
    const chosen = all.filter((i) => fragments[i]!.offset >= start && fragments[i]!.offset < end);
    if (chosen.length === 0) throw new Error('the Basic Offset Table points at no fragment');
    return concat(chosen);
  }
  if (fragments.length === opts.numberOfFrames || opts.oneFragmentPerFrame) return slice(0);

  // No offset table and several fragments per frame: a JPEG-family frame ends with the EOI/EOC
  // marker (FF D9), possibly followed by one padding byte.
  const chosen: number[] = [];
  for (const i of all) {
    chosen.push(i);
    const data = slice(i);
    const n = data.length;
    const endsWithEoi =
      (n >= 2 && data[n - 2] === 0xff && data[n - 1] === 0xd9) ||
      (n >= 3 && data[n - 3] === 0xff && data[n - 2] === 0xd9 && data[n - 1] === 0x00);
    if (endsWithEoi) return concat(chosen);
  }
  throw new Error('the end of the first frame could not be found in the compressed pixel data');
}

/** Basic Offset Table, or the Extended Offset Table (7FE0,0001) that replaces it for big files. */
function frameOffsets(dataSet: DataSet, pixelData: Element): number[] {
  const basic = pixelData.basicOffsetTable ?? [];
  if (basic.length > 0) return basic;
  const extended = dataSet.elements.x7fe00001;
  if (extended && extended.length >= 8 && extended.dataOffset + extended.length <= dataSet.byteArray.length) {
    const view = new DataView(dataSet.byteArray.buffer, dataSet.byteArray.byteOffset + extended.dataOffset, extended.length);
    const values: number[] = [];
    for (let p = 0; p + 8 <= extended.length && values.length < 2; p += 8) {
      values.push(Number(view.getBigUint64(p, true)));
    }
    return values;
  }
  return [];
}

export class TruncatedError extends Error {
  override name = 'TruncatedError';
}
