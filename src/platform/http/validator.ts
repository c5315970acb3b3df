/**
 * Schema validation for every route. Query strings and path parameters arrive as text, so
 * they are coerced to the schema's types (`?page=2` -> 2); JSON bodies already carry types and
 * are validated as sent. Coercing bodies would turn `null` into `""` inside a nullable union
 * (Ajv tries the string branch first and coerces in place), so a PATCH that removes a field
 * would store an empty string instead.
 */
import { Ajv, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { FastifySchema, FastifySchemaCompiler } from 'fastify';

// ajv-formats is CommonJS with a default export; under NodeNext its default import is the module.
const addFormats = (addFormatsModule as unknown as { default: (ajv: Ajv) => Ajv }).default;

function createAjv(coerceTypes: Options['coerceTypes']): Ajv {
  // strict: false, because TypeBox schemas carry annotations (e.g. `examples`) Ajv does not know.
  // verbose: errors carry the value that failed, so messages can say what was sent.
  const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: false, strict: false, verbose: true });
  addFormats(ajv);
  // `singleLine: true` on a string schema: a name or identifier, one line, not blank. Control
  // characters are refused for every field before validation (text-input.ts).
  ajv.addKeyword({
    keyword: 'singleLine',
    type: 'string',
    schemaType: 'boolean',
    validate: (enabled: boolean, data: string) => !enabled || (!/[\t\n\r]/.test(data) && data.trim() !== ''),
  });
  // `notBlank: true`: free text (notes, annotations) may span lines but must say something.
  ajv.addKeyword({
    keyword: 'notBlank',
    type: 'string',
    schemaType: 'boolean',
    validate: (enabled: boolean, data: string) => !enabled || data.trim() !== '',
  });
  return ajv;
}

export function createValidatorCompiler(): FastifySchemaCompiler<FastifySchema> {
  const coercing = createAjv('array');
  const exact = createAjv(false);
  return ({ schema, httpPart }) => (httpPart === 'body' ? exact : coercing).compile(schema as object);
}
