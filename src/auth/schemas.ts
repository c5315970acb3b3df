import { Type, type Static } from '@sinclair/typebox';
import { Nullable } from '../platform/http/schemas.js';

export const LoginBodySchema = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 254 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);
export type LoginBody = Static<typeof LoginBodySchema>;

export const RoleSchema = Type.Union([Type.Literal('doctor'), Type.Literal('admin')]);

export const LoginResponseSchema = Type.Object({
  user: Type.Object({
    _id: Type.String(),
    name: Type.String(),
    email: Type.String(),
    role: RoleSchema,
  }),
  token: Type.String(),
});

export const MeSchema = Type.Object({
  _id: Type.String(),
  name: Type.String(),
  email: Type.String(),
  role: RoleSchema,
  specialization: Nullable(Type.String()),
});
