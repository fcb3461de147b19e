// One way to check documents against JSON Schemas (ajv + formats), with error text that names the
// field: every file format e4ops reads or writes (manifests, reports, inventories, job files,
// appliance definitions) goes through here, and each caller wraps the text in its own error type.
import { Ajv, type ErrorObject, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** "/objects/0/sha256 must match pattern ...; / must have required property 'setId'" (first `max` errors). */
export function describeSchemaErrors(errors: ErrorObject[] | null | undefined, max = 5): string {
  return (errors ?? []).slice(0, max).map((e) => {
    const allowed = e.params && 'allowedValues' in e.params ? ` ${JSON.stringify(e.params.allowedValues)}` : '';
    const extra = e.params && 'additionalProperty' in e.params ? ` "${String(e.params.additionalProperty)}"` : '';
    return `${e.instancePath || '/'} ${e.message}${allowed}${extra}`;
  }).join('; ');
}

export interface SchemaValidator<T> {
  /** True when valid (and, with useDefaults, `doc` has had its defaults filled in). */
  is(doc: unknown): doc is T;
  /** '' when valid, else the described errors. */
  errors(doc: unknown): string;
}

export function compileSchemaValidator<T>(schema: object, opts: Pick<Options, 'useDefaults' | 'strict' | 'coerceTypes'> = {}): SchemaValidator<T> {
  const ajv = new Ajv({ allErrors: true, strict: false, ...opts });
  addFormats(ajv);
  const validate = ajv.compile<T>(schema);
  return {
    is: (doc): doc is T => validate(doc) as boolean,
    errors: (doc) => (validate(doc) ? '' : describeSchemaErrors(validate.errors)),
  };
}
