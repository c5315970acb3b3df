/**
 * A stand-in PostgreSQL server that answers every connection's startup message with the error
 * `code` (as a real server refuses a login or says it is starting, or as a pooler refuses a
 * startup parameter), counting the connections.
 */
import net from 'node:net';

export interface RefusingServer {
  url: string;
  connections: () => number;
  close: () => Promise<void>;
}

export async function refusingServer(code: string, message: string): Promise<RefusingServer> {
  let connections = 0;
  const field = (type: string, value: string) => Buffer.concat([Buffer.from(type), Buffer.from(value), Buffer.from([0])]);
  const body = Buffer.concat([field('S', 'FATAL'), field('V', 'FATAL'), field('C', code), field('M', message), Buffer.from([0])]);
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  const errorResponse = Buffer.concat([Buffer.from('E'), length, body]);
  const server = net.createServer((socket) => {
    connections++;
    socket.on('error', () => undefined);
    socket.once('data', () => socket.end(errorResponse));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `postgres://imagemedix:s3cret-pw@127.0.0.1:${port}/imagemedix_site`,
    connections: () => connections,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
