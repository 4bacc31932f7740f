export * from './file-state-store.js';
export { parseCniRecord, parseInstanceRecord } from './records.js';
