/**
 * Memory per grades record, measured in a fresh process per layout (each after a forced full GC):
 *  - store:    the GradeStore as the Grades actor holds it (its key index and chunked typed columns, all outside
 *              the V8 heap);
 *  - previous: the layout it replaced, a Map<string, Float64Array(8)> (the baseline; skipped above 2,000,000
 *              records by default, where it would need several GB: pass --previous to force it);
 *  - map:      a bare Map<string, number> with the same keys: the floor of any layout indexed by a Map, before
 *              any value is stored (the store's first version, with 32-byte columns, was this plus 32).
 * Every record has a 20-character user_id (decoded from bytes, as /set bodies, stream messages and backups give
 * them: flat strings), two fields set and stream sequences up to N. Counted: V8 heap used plus the ArrayBuffer
 * memory outside the heap (process.memoryUsage().arrayBuffers, the store's columns), each as growth over the same
 * process before filling; RSS growth beside it; and the time of a lookup of an existing id (a fresh string, as a
 * request brings it; the store's is `GradeStore.get`, which also builds the record).
 *
 *   node --import tsx scripts/grades-memory.ts [--records 1000000,10000000] [--previous]
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { GradeStore } from '../src/grades/store.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000,10000000' },
    previous: { type: 'boolean', default: false },
    child: { type: 'string' },
    n: { type: 'string' },
  },
});

interface Figures {
  layout: string;
  records: number;
  heap: number;
  arrayBuffers: number;
  rss: number;
  fillSeconds: number;
  /** Nanoseconds a lookup of an existing id (a fresh string, as a request brings it), median of 5 passes. */
  lookupNs: number;
}

/** The n-th user id: 20 ASCII characters, decoded from bytes into a flat string of its own. */
function userIds(): (i: number) => string {
  const buf = Buffer.alloc(20);
  return (i) => {
    buf.write(`user-${String(i).padStart(15, '0')}`, 'latin1');
    return buf.toString('latin1', 0, 20);
  };
}

function measure(layout: string, n: number): Figures {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const id = userIds();
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  let keep: unknown;
  let lookup: (key: string) => unknown = () => undefined;
  if (layout === 'store') {
    const store = new GradeStore();
    for (let i = 0; i < n; i++) store.applyStored({ user_id: id(i), spp: i % 100, return_fee: 150 }, i + 1);
    keep = store;
    lookup = (key) => store.get(key);
  } else if (layout === 'previous') {
    const map = new Map<string, Float64Array>();
    for (let i = 0; i < n; i++) {
      const slots = new Float64Array(8);
      slots[1] = i % 100;
      slots[3] = 150;
      slots[5] = slots[7] = i + 1;
      map.set(id(i), slots);
    }
    keep = map;
    lookup = (key) => map.get(key);
  } else {
    const map = new Map<string, number>();
    for (let i = 0; i < n; i++) map.set(id(i), i);
    keep = map;
    lookup = (key) => map.get(key);
  }
  const fillSeconds = (performance.now() - t0) / 1000;
  gc();
  const after = process.memoryUsage();
  // Still reachable here: what was measured is what the layout holds.
  if (!keep) throw new Error('nothing held');
  const passes: number[] = [];
  const ids = Array.from({ length: 200_000 }, (_, k) => id((k * 7919) % n));
  for (let pass = 0; pass < 5; pass++) {
    const t = performance.now();
    let found = 0;
    for (const key of ids) if (lookup(key) !== undefined) found++;
    if (found !== ids.length) throw new Error('lookup missed');
    passes.push(((performance.now() - t) * 1e6) / ids.length);
  }
  const lookupNs = passes.sort((a, b) => a - b)[2] as number;
  return {
    layout,
    records: n,
    heap: after.heapUsed - before.heapUsed,
    arrayBuffers: after.arrayBuffers - before.arrayBuffers,
    rss: after.rss - before.rss,
    fillSeconds,
    lookupNs,
  };
}

if (values.child) {
  process.stdout.write(JSON.stringify(measure(values.child, Number(values.n))));
} else {
  const counts = values.records.split(',').map(Number);
  console.log('grades memory per record (after a forced GC; heap + arrayBuffers is the figure that counts)');
  console.log('  layout    records      heap/rec  arrayBuffers/rec  total/rec  rss/rec  fill    lookup');
  for (const n of counts) {
    for (const layout of ['map', 'previous', 'store']) {
      if (layout === 'previous' && n > 2_000_000 && !values.previous) {
        console.log(
          `  previous  ${String(n).padEnd(11)}  skipped (about 640 bytes a record; --previous runs it)`,
        );
        continue;
      }
      const out = execFileSync(
        process.execPath,
        [
          '--expose-gc',
          '--max-old-space-size=16384',
          '--import',
          'tsx',
          new URL(import.meta.url).pathname,
          '--child',
          layout,
          '--n',
          String(n),
        ],
        { encoding: 'utf8', maxBuffer: 1 << 20 },
      );
      const f = JSON.parse(out) as Figures;
      const per = (b: number) => (b / n).toFixed(1).padStart(8);
      console.log(
        `  ${layout.padEnd(8)}  ${String(n).padEnd(11)} ${per(f.heap)}  ${per(f.arrayBuffers).padStart(16)}  ${per(f.heap + f.arrayBuffers).padStart(9)} ${per(f.rss)}  ${f.fillSeconds.toFixed(1)} s  ${f.lookupNs.toFixed(0)} ns`,
      );
    }
  }
}
