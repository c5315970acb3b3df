import { Type } from '@sinclair/typebox';
import { MIN_PASSWORD_LENGTH } from '../auth/password-policy.js';
import { RoleSchema } from '../auth/schemas.js';
import { IsoDateTime, Line, Nullable } from '../platform/http/schemas.js';

export const UserSchema = Type.Object({
  _id: Type.String(),
  name: Type.String(),
  email: Type.String(),
  role: RoleSchema,
  specialization: Nullable(Type.String()),
  isActive: Type.Boolean(),
});

export const CreateUserBodySchema = Type.Object(
  {
    name: Line({ maxLength: 200 }),
    email: Type.String({ format: 'email', maxLength: 254 }),
    password: Type.String({ minLength: MIN_PASSWORD_LENGTH, maxLength: 1024 }),
    role: Type.Optional(RoleSchema),
    specialization: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
  },
  { additionalProperties: false },
);

export const UpdateUserBodySchema = Type.Object(
  {
    name: Type.Optional(Line({ maxLength: 200 })),
    role: Type.Optional(RoleSchema),
    isActive: Type.Optional(Type.Boolean()),
    specialization: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
    password: Type.Optional(Type.String({ minLength: MIN_PASSWORD_LENGTH, maxLength: 1024 })),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const AddressLockSchema = Type.Object({
  ip: Type.String({ description: 'The client address, as the server sees it (behind a proxy only with TRUST_PROXY)' }),
  failures: Type.Integer({ description: 'Failed sign-ins from it in the current window' }),
  windowStartedAt: IsoDateTime,
  lockedUntil: IsoDateTime,
});

export const AddressParamsSchema = Type.Object({
  ip: Type.String({ minLength: 2, maxLength: 64, description: 'An IPv4 or IPv6 address' }),
});
