/**
 * Feature plugins beyond the core (auth, users, patients) and the background services they
 * need (analysis worker, webhook delivery). One list, so server.ts and tests wire the same app.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AppContext } from './context.js';

export interface Background {
  stop(): Promise<void>;
}

export async function startBackground(_ctx: AppContext, _log: Logger): Promise<Background> {
  return { async stop() {} };
}

export function features(_background: Background): Array<(app: FastifyInstance, ctx: AppContext) => Promise<void>> {
  return [];
}
