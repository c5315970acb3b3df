import { Type } from '@sinclair/typebox';
import { Nullable } from '../platform/http/schemas.js';
import { MIN_PASSWORD_LENGTH } from './password-policy.js';

export const LoginBodySchema = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 254 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

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

export const ChangePasswordBodySchema = Type.Object(
  {
    currentPassword: Type.String({ minLength: 1, maxLength: 1024 }),
    newPassword: Type.String({
      minLength: MIN_PASSWORD_LENGTH,
      maxLength: 1024,
      description: `At least ${MIN_PASSWORD_LENGTH} characters, hard to guess (zxcvbn score 3 or more), not built on your email or name`,
    }),
  },
  { additionalProperties: false },
);

export const ChangePasswordResponseSchema = Type.Object({
  message: Type.String(),
  token: Type.String({ description: "A new access token for this device: every token issued before the change has stopped working" }),
});
