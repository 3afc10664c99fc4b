/** The read side of a form's parameters, as `URLSearchParams` offers it. */
export interface FormParams {
  get(name: string): string | null;
  getAll(name: string): string[];
  has(name: string): boolean;
  /** Each parameter's name, in order, once per occurrence. */
  keys(): IterableIterator<string>;
}

/**
 * An `application/x-www-form-urlencoded` body, parsed to exactly the names and values `new URLSearchParams(text)`
 * yields (a property test holds the two together). A name or value without `%` or `+`, which is nearly every
 * byte of a token request (a subject token is base64url), is taken as it is; `URLSearchParams` walks each
 * character of it, a few microseconds per exchange.
 */
export class Form implements FormParams {
  readonly #names: string[] = [];
  readonly #values: string[] = [];

  constructor(text: string) {
    let start = 0;
    while (start <= text.length) {
      let end = text.indexOf('&', start);
      if (end < 0) end = text.length;
      if (end > start) {
        // The '=' is looked for inside this pair only, so a body of many pairs is read in linear time.
        const pair = text.slice(start, end);
        const eq = pair.indexOf('=');
        this.#names.push(decode(eq < 0 ? pair : pair.slice(0, eq)));
        this.#values.push(eq < 0 ? '' : decode(pair.slice(eq + 1)));
      }
      start = end + 1;
    }
  }

  get(name: string): string | null {
    const i = this.#names.indexOf(name);
    return i < 0 ? null : (this.#values[i] as string);
  }

  getAll(name: string): string[] {
    const all: string[] = [];
    this.#names.forEach((n, i) => {
      if (n === name) all.push(this.#values[i] as string);
    });
    return all;
  }

  has(name: string): boolean {
    return this.#names.includes(name);
  }

  keys(): IterableIterator<string> {
    return this.#names.values();
  }
}

/**
 * `+` is a space, then percent-decoding. `decodeURIComponent` gives the URL standard's answer whenever it succeeds
 * (every escape well-formed, the bytes UTF-8); anything else, rare and never in a valid request, is left to
 * `URLSearchParams` itself, which decodes leniently.
 */
function decode(raw: string): string {
  if (!raw.includes('%') && !raw.includes('+')) return raw;
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return new URLSearchParams(`v=${raw}`).get('v') ?? '';
  }
}
