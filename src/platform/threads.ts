/**
 * Worker-thread entry files sit next to the module that starts them. Under tsx that module is
 * `x.ts` and so is its thread; compiled, both are `.js`: the extension follows the caller's.
 */
import path from 'node:path';

/** URL of the module `name` (no extension) beside `base` (the caller's import.meta.url). */
export function siblingModuleUrl(base: string, name: string): string {
  const ext = path.extname(new URL(base).pathname);
  return new URL(`./${name}${ext}`, base).href;
}
