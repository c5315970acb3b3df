/** Schemas every feature's routes share. */
import { Type, type TSchema } from '@sinclair/typebox';

export const ErrorSchema = Type.Object({ error: Type.String() }, { $id: 'Error', description: 'Every error' });

/** The standard error responses of an authenticated route, to spread into `response`. */
export const authErrors = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  429: ErrorSchema,
};

export const MessageSchema = Type.Object({ message: Type.String() });

export const IdParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128, description: 'The resource _id' }),
});

export const PageQuery = {
  page: Type.Integer({ minimum: 1, default: 1 }),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
};

export const IsoDateTime = Type.String({ format: 'date-time' });

export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Ids are UUIDs; anything else cannot name a row, so it is simply "not found". */
export const isUuid = (s: string) => UUID.test(s);
