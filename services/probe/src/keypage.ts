// One page of a map's entries in key order, after a cursor key. The kernel
// walks a hash map in bucket order, and continuing that walk from the last
// key returned (BPF_MAP_GET_NEXT_KEY) breaks when that key is deleted
// between pages: the kernel starts again from the first bucket, so a client
// sees blocks twice and, with deletions on every page, never reaches the
// end. In key order the cursor needs no entry to exist: the next page starts
// at the first key above it, whatever was deleted or added meanwhile, and
// every entry held throughout a listing is listed exactly once.
//
// The price is a read of the whole map per page. Measured on the
// development machine with 65,536 IPv6 blocks: 35-50 ms a page for the read
// (about 25 ms, batched), a selection of the page's keys in linear time and
// a sort of the page alone (a full sort would double it); with the encoding,
// the whole list took 7 ListBlocks calls and 1.0 s end to end at 10,000 a
// page, 66 calls and 3.7 s at the default 1,000 (test/e2e/pages.root.test.ts).

/** Entries whose keys are above `after` (all when undefined), the `size` smallest in key order, and whether more follow. */
export function keyPage<V>(entries: readonly (readonly [Buffer, V])[], after: Buffer | undefined, size: number): { page: [Buffer, V][]; more: boolean } {
  const above = entries.filter(([k]) => after === undefined || Buffer.compare(k, after) > 0) as [Buffer, V][];
  const more = above.length > size;
  if (more) {
    selectSmallest(above, size);
    above.length = size;
  }
  return { page: above.sort(byKey), more };
}

const byKey = (a: readonly [Buffer, unknown], b: readonly [Buffer, unknown]) => Buffer.compare(a[0], b[0]);

/**
 * Reorders `items` so that its first `k` are the k smallest (in no order):
 * quickselect with a random pivot, linear on average for any input (the keys
 * are addresses an attacker may choose; a fixed pivot rule could be made
 * quadratic).
 */
function selectSmallest<T extends readonly [Buffer, unknown]>(items: T[], k: number): void {
  let lo = 0;
  let hi = items.length - 1;
  while (lo < hi) {
    const pivot = items[lo + Math.floor(Math.random() * (hi - lo + 1))]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (byKey(items[i]!, pivot) < 0) i++;
      while (byKey(items[j]!, pivot) > 0) j--;
      if (i <= j) {
        const t = items[i]!;
        items[i] = items[j]!;
        items[j] = t;
        i++;
        j--;
      }
    }
    // Now items[lo..j] <= pivot <= items[i..hi], and j < i.
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else return;
  }
}
