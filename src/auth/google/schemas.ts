import { Type } from '@sinclair/typebox';

// Providers add their own parameters to the redirect (Google: scope, authuser, hd, prompt;
// RFC 9207: iss), so unknown ones are allowed and handed to openid-client untouched.
export const GoogleCallbackQuerySchema = Type.Object(
  {
    code: Type.Optional(Type.String()),
    state: Type.Optional(Type.String()),
    error: Type.Optional(Type.String()),
    error_description: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);

export const GoogleErrorResponseSchema = Type.Object({ error: Type.String() });

export const RedirectResponseSchema = Type.Null({ description: 'Redirect; see the Location header' });
