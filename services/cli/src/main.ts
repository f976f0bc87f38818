#!/usr/bin/env node
// packetwatchctl: the operator's command line for a Packetwatch policy and
// probe. `packetwatchctl --help` lists the commands.
import { run } from './program.js';

// A closed pipe (`packetwatchctl watch | head`) ends the program quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const code = await run(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  env: process.env,
  now: () => Date.now(),
  onInterrupt(fn) {
    process.on('SIGINT', fn);
    process.on('SIGTERM', fn);
    return () => {
      process.off('SIGINT', fn);
      process.off('SIGTERM', fn);
    };
  },
});
process.exitCode = code;
// The channels are closed; should anything still hold the loop, do not hang.
setTimeout(() => process.exit(code), 2000).unref();
