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

/** JSON pointer (/c2/replicas, /hosts/0/url) → dotted key (c2.replicas, hosts[0].url). */
export function schemaKeyOf(pointer: string, extra?: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : (out ? '.' : '') + p;
  return out || '(top level)';
}

/** The schema node for a JSON pointer, to quote allowed keys and descriptions in errors. */
function schemaNodeAt(root: object, pointer: string): Record<string, any> | undefined {
  let node: any = root;
  for (const p of pointer.split('/').slice(1)) {
    if (!node) return undefined;
    node = /^\d+$/.test(p) ? node.items : node.properties?.[p] ?? (typeof node.additionalProperties === 'object' ? node.additionalProperties : undefined);
  }
  return node;
}

export interface OperatorErrorOptions {
  /** Extra words after "unknown key" for a given key (e.g. why secrets do not belong in a file). */
  unknownKeyHint?: (key: string) => string;
}

/**
 * One ajv error as an operator reads it: the dotted key, what is wrong, and "Fix: ...", quoting the
 * schema's description and the keys allowed where that helps. For settings files people edit by hand.
 */
export function describeSchemaErrorWithFix(e: ErrorObject, rootSchema: object, opts: OperatorErrorOptions = {}): string {
  const key = schemaKeyOf(e.instancePath);
  const node = schemaNodeAt(rootSchema, e.instancePath);
  const hint = node?.description ? ` (${node.description})` : '';
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(node?.properties ?? {}).join(', ');
      return `${schemaKeyOf(e.instancePath, extra)}: unknown key${opts.unknownKeyHint?.(extra) ?? ''}. Fix: remove it or correct its spelling${allowed ? ` (keys allowed in ${key}: ${allowed})` : ''}`;
    }
    case 'required':
      return `${schemaKeyOf(e.instancePath, (e.params as { missingProperty: string }).missingProperty)}: missing. Fix: add it`;
    case 'type':
      return `${key}: must be of type ${(e.params as { type: string }).type}. Fix: give a ${(e.params as { type: string }).type} value${hint}`;
    case 'enum':
      return `${key}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}. Fix: pick one of them`;
    case 'format':
      return `${key}: is not a valid ${(e.params as { format: string }).format} address. Fix: give a dotted IPv4 address such as 127.0.0.1${hint}`;
    case 'minimum': case 'maximum': case 'minItems': case 'maxItems': case 'minLength':
      return `${key}: ${e.message}. Fix: change the value${hint}`;
    case 'pattern':
      return `${key}: has an invalid form (${e.message}). Fix: correct the value${hint}`;
    default:
      return `${key}: ${e.message}${hint}`;
  }
}
