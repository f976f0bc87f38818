export * from './address.js';
export * from './records.js';
export * from './datapath.js';
export * from './frames.js';
