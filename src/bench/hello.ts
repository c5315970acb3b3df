/** The HTTP ceiling of this machine: a Fastify hello-world, run beside ImageMedix by bench:api. */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/', async () => ({ hello: 'world' }));
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
