// Service logs: pino, JSON lines. PW_LOG_LEVEL picks the level.
import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A JSON logger; fd 1 (stdout) by default, 2 when stdout carries something else (the live table). */
export function createLogger(name: string, level: LogLevel, fd: 1 | 2 = 1): Logger {
  const opts: LoggerOptions = {
    name,
    level,
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return pino(opts, pino.destination({ fd, sync: false }));
}
