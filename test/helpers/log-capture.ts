/** A real pino logger with the production options, writing into memory for tests to read. */
import pino, { type Logger } from 'pino';
import { loggerOptions } from '../../src/platform/logging.js';

export interface CapturedLog {
  log: Logger;
  /** Everything logged so far, as the JSON lines pino wrote. */
  text(): string;
  /** The parsed entries. */
  entries(): Record<string, unknown>[];
}

export function captureLog(level = 'trace'): CapturedLog {
  const lines: string[] = [];
  const log = pino(loggerOptions(level), { write: (line: string) => void lines.push(line) });
  return {
    log,
    text: () => lines.join(''),
    entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** The markers a test sent that the log holds, in any of the forms a log line could quote them. */
export function leakedMarkers(logText: string, markers: string[]): string[] {
  // JSON.stringify escapes some characters: look for both the raw and the escaped form.
  return markers.filter((m) => logText.includes(m) || logText.includes(JSON.stringify(m).slice(1, -1)));
}
