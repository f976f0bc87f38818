export * from '@packetwatch/common/address';
export * from './records.js';
export * from './datapath.js';
export * from './frames.js';
export * from './classify.js';
