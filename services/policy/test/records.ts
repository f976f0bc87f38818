// Decisions written straight into a store, as the policy's Recorder would
// (ids assigned in order): for tests of what reads the store.
import type { DecisionRecord, DecisionStore } from '../src/store.js';

export function appendDecision(store: DecisionStore, d: Omit<DecisionRecord, 'id' | 'endedMs' | 'shadow'> & { shadow?: boolean }): DecisionRecord {
  const record: DecisionRecord = { ...d, id: store.lastId() + 1, endedMs: undefined, shadow: d.shadow ?? false };
  store.insert(record);
  return record;
}
