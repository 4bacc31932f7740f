export * from './file-state-store.js';
export { parseCniRecord, parseInstanceRecord } from './records.js';
export { RECORD_FORMAT_VERSION, OLDEST_READABLE_FORMAT, RecordFormatError, upgradeRecord } from './format-version.js';
