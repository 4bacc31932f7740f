/**
 * @nodenet/state: core's StateStore on a directory of JSON records (one file per object, written
 * atomically, staged before the change and committed after), read back at restart.
 */
export { FileStateStore, StateFileError, type FileStateStoreOptions } from './file-state-store.js';
export { parseCniRecord, parseInstanceRecord } from './records.js';
export { RECORD_FORMAT_VERSION, OLDEST_READABLE_FORMAT, RecordFormatError, recordFormatOf, upgradeRecord } from './format-version.js';
