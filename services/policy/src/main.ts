#!/usr/bin/env node
// packetwatch-policy: the unprivileged half of Packetwatch. It needs no
// capabilities and no root: it reads events, decides, and calls probes back.
import type { Server } from 'node:http';
import {
  ConfigError,
  REPORT_WINDOW_BYTES,
  VERSION,
  createLogger,
  loadConfig,
  parseEndpoint,
  runMain,
  serveMetrics,
  startServer,
  usage,
  warnUnknownVariables,
} from '@packetwatch/common';
import { PROTO_FILES, PROTO_ROOT, PolicyService, deserializeProbeMessage } from '@packetwatch/proto';
import { Allowlist } from './allowlist.js';
import { policySettings, probeConfigOf, validate } from './config.js';
import { Decisions } from './decisions.js';
import { Detector } from './detector.js';
import { Feed } from './feed.js';
import { PolicyMetrics } from './metrics.js';
import { ProbeRegistry } from './probes.js';
import { Recorder } from './recorder.js';
import { Retention } from './retention.js';
import { SourceKeys } from './sourcekey.js';
import { POLICY_ROLES, policyService } from './service.js';
import { DecisionStore, StoreOpenError } from './store.js';
import { banner, header, row } from './table.js';

const NAME = 'packetwatch-policy';

runMain(NAME, async () => {
  const loaded = loadConfig(policySettings, process.argv.slice(2), process.env);
  if (loaded.help) {
    process.stdout.write(usage(NAME, '[flags]', policySettings));
    return;
  }
  if (loaded.positionals.length > 0) throw new ConfigError('arguments', loaded.positionals.join(' '), 'no positional arguments');
  const c = validate(loaded.config);
  const table = c.logFormat === 'table' || (c.logFormat === 'auto' && process.stdout.isTTY === true);
  // With the table on stdout, logs go to stderr.
  const log = createLogger(NAME, c.logLevel, table ? 2 : 1);
  warnUnknownVariables(log, process.env);
  if (process.getuid?.() === 0) {
    log.warn('running as root: the policy needs no privileges; run it as an unprivileged user (make run does)');
  }

  let opened;
  try {
    opened = DecisionStore.open(c.stateDir);
  } catch (e) {
    // Not the setting's fault, and not damage: a lock, permissions, a
    // read-only or full file system, a newer schema. Exit 1, history untouched.
    if (e instanceof StoreOpenError) throw new Error(`PW_STATE_DIR=${c.stateDir}: ${e.message}`);
    throw e;
  }
  const { store } = opened;
  if (opened.movedAside) {
    log.error(
      { movedTo: opened.movedAside.path, reason: opened.movedAside.reason },
      'decision store unreadable: moved aside; starting empty and rebuilding decisions from the probes\' kernel blocklists',
    );
  }

  if (c.openPorts.length > 0 && c.portscanCount !== 'closed') {
    log.warn({ openPorts: c.openPorts }, 'PW_OPEN_PORTS has no effect unless PW_PORTSCAN_COUNT=closed: every SYN counts');
  }
  const started = new Date();
  const metrics = new PolicyMetrics();
  const recorder = new Recorder(store, metrics, log);
  const feed = new Feed();
  const detector = new Detector({ portThreshold: c.portThreshold, windowSeconds: c.timeThreshold, maxSources: c.maxSources, pairThreshold: c.fleetThreshold });
  // Sources (detector, decisions, blocks) are prefixes of these lengths; the allowlist goes by address.
  const keys = new SourceKeys({ ipv6: c.ipv6Prefix, ipv4: c.ipv4Prefix });
  const allowlist = new Allowlist(c.allowPrefixes, keys);
  for (const e of store.allowEntries()) allowlist.addOperator(e.prefix, e.addedMs, e.note);
  const probes = new ProbeRegistry();
  const decisions = new Decisions({
    recorder,
    probes,
    allowlist,
    detector,
    feed,
    metrics,
    log,
    detectorTtlSeconds: c.blockTtl,
    maxBlocksPerMinute: c.maxBlocksPerMinute,
    cappedTtlSeconds: c.cappedBlockTtl,
    ttlFactor: c.ttlFactor,
    ttlMaxSeconds: c.blockTtlMax,
    // The rule kept with each decision's evidence (evidence.ts).
    rule: { portThreshold: c.portThreshold, windowSeconds: c.timeThreshold, fleetThreshold: c.fleetThreshold },
    shadow: !c.enforce,
    enforceShadowDecisions: c.enforceShadowDecisions,
  });
  if (!c.enforce) log.warn('SHADOW MODE (PW_ENFORCE=False): scanners are detected, decided and recorded, and no probe drops anything for a block');
  log.info({ decisions: decisions.active().length, stateDir: c.stateDir }, 'decisions restored from the store');
  metrics.sourcePrefixes(keys.lengths);
  metrics.enforcing(c.enforce);
  metrics.observe({
    trackedSources: () => detector.tracked,
    evictions: () => detector.evictions,
    admission: () => detector,
    activeDecisions: () => decisions.active().length,
    activeShadowDecisions: () => decisions.active().filter((d) => d.shadow).length,
    probesConnected: () => probes.size,
    storeWritesHeld: () => recorder.state.held,
  });

  let bannerShown = false;
  if (table) {
    // One write per turn of the event loop, not one per row: a flood must
    // not turn into a syscall per SYN.
    let pending: string[] = [];
    feed.subscribe((e) => {
      if (pending.length === 0) setImmediate(() => {
        process.stdout.write(pending.join(''));
        pending = [];
      });
      pending.push(`${row(e)}\n`);
    });
  }
  const onProbe = (s: { hello: { interface: string; probeId: string } }) => {
    if (!table) return;
    if (!bannerShown) {
      bannerShown = true;
      process.stdout.write(
        `${banner({ interface: s.hello.interface, portThreshold: c.portThreshold, windowSeconds: c.timeThreshold, whitelistSelf: c.whitelistSelf, shadow: !c.enforce })}\n${header()}\n`,
      );
    } else {
      process.stdout.write(`# probe ${s.hello.probeId} joined: logging all incoming connections on ${s.hello.interface}\n`);
    }
  };
  for (const p of c.allowPrefixes) feed.publish({ timeMs: Date.now(), kind: 'whitelist', source: p, port: 0, probeId: '', message: 'PW_ALLOWLIST' });

  const tls = { cert: c.tlsCert, key: c.tlsKey, ca: c.tlsCa, insecure: c.insecureTcp };
  const tcpEndpoint = c.tcpAddr === undefined ? undefined : parseEndpoint(c.tcpAddr);
  const grpcServer = await startServer({
    sockets: [
      { path: c.socket, mode: 0o660, group: c.socketGroup, role: 'operator' },
      { path: c.reportSocket, mode: 0o660, group: c.controlGroup, role: 'probe' },
    ],
    tcp: tcpEndpoint?.kind === 'tcp' ? { endpoint: tcpEndpoint, tls, insecure: c.insecureTcp } : undefined,
    receiveWindowBytes: REPORT_WINDOW_BYTES,
    services: [
      {
        definition: { ...PolicyService, report: { ...PolicyService.report, requestDeserialize: deserializeProbeMessage } },
        implementation: policyService({
          detector,
          decisions,
          allowlist,
          probes,
          feed,
          metrics,
          log,
          tls,
          whitelistSelf: c.whitelistSelf,
          portThreshold: c.portThreshold,
          windowSeconds: c.timeThreshold,
          blockTtlSeconds: c.blockTtl,
          probeConfig: probeConfigOf(c),
          started,
          recorder,
          onProbe,
        }),
        name: 'packetwatch.v1.Policy',
        roles: POLICY_ROLES,
      },
    ],
    reflection: { root: PROTO_ROOT, files: PROTO_FILES },
    log,
  });
  // Health says whether decisions are being recorded (recorder.ts); enforcement does not wait on it.
  grpcServer.setServing(recorder.serving);
  recorder.onHealth((serving) => grpcServer.setServing(serving));
  let metricsServer: Server | undefined;
  if (c.prometheusPort > 0) metricsServer = await serveMetrics(metrics.registry, c.prometheusPort, c.metricsHost, log);

  const stopRetention = new Retention(store, c.decisionRetention, metrics, log).start();
  const sweeper = setInterval(() => detector.sweep(), 1000);
  sweeper.unref();
  const reconciler = setInterval(() => {
    for (const p of probes.all()) {
      decisions.reconcile(p).catch((e: Error) => log.warn({ probe: p.id, err: e.message }, 'periodic reconcile failed'));
    }
  }, c.reconcileSeconds * 1000);
  reconciler.unref();
  log.info(
    {
      version: VERSION,
      socket: c.socket,
      portThreshold: c.portThreshold,
      fleetThreshold: c.fleetThreshold,
      windowSeconds: c.timeThreshold,
      blockTtl: c.blockTtl,
      decisionRetention: c.decisionRetention,
    },
    'policy running',
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    clearInterval(sweeper);
    clearInterval(reconciler);
    stopRetention();
    await grpcServer.close(1000);
    await new Promise((r) => (metricsServer ? metricsServer.close(r) : r(undefined)));
    for (const p of probes.all()) p.close();
    recorder.close();
    store.close();
    log.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
});
