export * from './address.js';
export * from './config.js';
export * from './log.js';
export * from './metrics.js';
export * from './grpc.js';
export * from './main.js';
export * from './table.js';
export * from './version.js';
