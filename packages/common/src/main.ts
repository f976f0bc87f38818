// Process entry: settings errors exit 2 with the message, anything else
// that escapes start-up exits 1; nothing prints a stack trace at a user
// who only mistyped a setting.
import { ConfigError } from './config.js';

export function runMain(name: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.PW_DEBUG) console.error(err);
    process.exit(1);
  });
}
