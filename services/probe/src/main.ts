#!/usr/bin/env node
// packetwatch-probe: the privileged half of Packetwatch.
//   packetwatch-probe [run]   attach (or adopt) the XDP program and serve
//   packetwatch-probe detach  remove the program, its maps and pins
import type { Server } from 'node:http';
import { endianness } from 'node:os';
import { Datapath, SCAN_MAX_PORTS, SYN_EVENT_SIZE } from '@packetwatch/bpf';
import {
  ConfigError,
  VERSION,
  createLogger,
  formatEndpoint,
  loadConfig,
  parseEndpoint,
  runMain,
  serveMetrics,
  startServer,
  usage,
  warnUnknownVariables,
} from '@packetwatch/common';
import { ConfigOrigin, PROTO_FILES, PROTO_ROOT, type ProbeConfig, ProbeService } from '@packetwatch/proto';
import { InterfaceNotFoundError } from 'libbpf-ts';
import { AddressWatcher } from './addresses.js';
import { AllowOrigin, allowFrom, applyPolicyAllowlist, disallowFrom, syncFrom } from './allowlist.js';
import { type AttachState, type Attachment, type KernelScan, attach, checkAttachment, detach, pinDirFor, reload } from './attachment.js';
import { Blocks, bootToUnixOffsetNs } from './blocks.js';
import { probeSettings, validate } from './config.js';
import { ProbeMetrics } from './metrics.js';
import { EventQueue } from './queue.js';
import { Reporter } from './reporter.js';
import {
  DEFAULT_SCAN_CONFIG,
  type ScanConfig,
  type ScanConfigState,
  checkScanConfig,
  fromRecord,
  kernelScanPorts,
  sameScanConfig,
  toProto,
  toRecord,
} from './scanconfig.js';
import { PROBE_ROLES, attachModeOf, probeService } from './service.js';

const NAME = 'packetwatch-probe';
/** Records are in host byte order; the policy reads them little-endian, as every supported host is. */
const LITTLE_ENDIAN = endianness() === 'LE';

runMain(NAME, async () => {
  const loaded = loadConfig(probeSettings, process.argv.slice(2), process.env);
  if (loaded.help) {
    process.stdout.write(usage(NAME, '[run | detach] [flags]', probeSettings));
    return;
  }
  const c = validate(loaded.config);
  const command = loaded.positionals[0] ?? 'run';
  const log = createLogger(NAME, c.logLevel);
  warnUnknownVariables(log, process.env);

  if (command === 'detach') {
    detach(c.pinRoot, c.ifdev, log);
    log.flush();
    return;
  }
  if (command !== 'run' || loaded.positionals.length > 1) throw new ConfigError('command', loaded.positionals.join(' '), 'run or detach');

  // The scan configuration: the policy's, as an earlier run pinned it, until
  // the policy sends one; the seed's defaults when no policy ever did.
  let scan: ScanConfigState = { config: DEFAULT_SCAN_CONFIG, origin: ConfigOrigin.CONFIG_ORIGIN_DEFAULTS, received: undefined };
  try {
    const rec = Datapath.readPinnedProbeConfig(pinDirFor(c.pinRoot, c.ifdev));
    const pinned = rec && fromRecord(rec, Datapath.readPinnedPortCount(pinDirFor(c.pinRoot, c.ifdev)));
    if (rec && !pinned) log.warn({ pinned: rec }, 'the pinned scan configuration is not one the detector can run with; using the defaults until the policy sends one');
    if (pinned) scan = { config: pinned.config, origin: ConfigOrigin.CONFIG_ORIGIN_PINNED, received: pinned.received };
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'the pinned scan configuration could not be read; using the defaults until the policy sends one');
  }
  // The XDP program runs the rule for N up to SCAN_MAX_PORTS; beyond,
  // detection is the policy's alone.
  const kernelScan = (cfg: ScanConfig): KernelScan => {
    const ports = kernelScanPorts(cfg, c.kernelDetection);
    if (c.kernelDetection && ports === 0) {
      log.info({ portThreshold: cfg.portThreshold, max: SCAN_MAX_PORTS }, 'in-kernel scan detection off: N is above what the XDP program takes; the policy detects alone');
    }
    return {
      ports,
      windowSeconds: cfg.windowSeconds,
      blockSeconds: cfg.blockTtlSeconds,
      blocksPerMinute: cfg.maxBlocksPerMinute,
      cappedBlockSeconds: cfg.cappedBlockTtlSeconds,
      tableSize: c.scanTableSize,
      probationSize: c.scanProbationSize,
      ipv6Prefix: cfg.ipv6Prefix,
      ipv4Prefix: cfg.ipv4Prefix,
      shadow: cfg.shadow,
      countClosed: cfg.countClosed,
      openPorts: cfg.openPorts,
    };
  };
  const datapathOptions = { dropMode: c.dropMode, blocklistSize: c.blocklistSize, allowlistSize: c.allowlistSize, ringbufBytes: c.ringbufBytes };
  log.info({ scan: scan.config, from: ConfigOrigin[scan.origin], received: scan.received }, 'scan configuration');
  if (scan.config.shadow) log.warn("SHADOW MODE (the policy's PW_ENFORCE=False, pinned): the XDP program drops nothing for a block");
  let att: Attachment;
  try {
    att = attach({ ...datapathOptions, ifname: c.ifdev, pinRoot: c.pinRoot, mode: c.xdpMode, scan: kernelScan(scan.config), log });
  } catch (e) {
    if (e instanceof InterfaceNotFoundError) throw new ConfigError('PW_IFDEV', c.ifdev, 'the name of an existing network interface');
    throw e;
  }
  // att.dp changes when a new scan configuration loads the program again:
  // everything below reads it through att.
  const started = new Date();
  let programId = att.dp.program.info().id;
  const lengthsOf = (cfg: ScanConfig) => ({ ipv6: cfg.ipv6Prefix, ipv4: cfg.ipv4Prefix });
  const blocks = new Blocks(att.dp, lengthsOf(scan.config));
  // Pinned entries written under longer keys than the program looks up (by
  // a probe that keyed by whole addresses, say) would never match again.
  const pinnedRekey = blocks.rekey(undefined, lengthsOf(scan.config));
  if (pinnedRekey.widened + pinnedRekey.merged > 0) log.warn({ ...pinnedRekey, prefixes: lengthsOf(scan.config) }, 'pinned blocks keyed longer than the configured prefixes moved to their prefix');

  const watcher = new AddressWatcher(c.ifdev, (change) => {
    log.info(change, 'interface addresses changed');
    if (c.whitelistSelf) {
      allowFrom(att.dp, AllowOrigin.OwnAddress, change.added);
      disallowFrom(att.dp, AllowOrigin.OwnAddress, change.removed);
    }
    reporter.send({ message: { $case: 'ownAddresses', value: { addresses: change.current } } });
  });
  syncFrom(att.dp, AllowOrigin.OwnAddress, c.whitelistSelf ? watcher.current : []);
  if (c.whitelistSelf) log.info({ addresses: watcher.current }, 'allowlisted own addresses');

  // Events are rewritten to wall-clock time in the queue as they arrive
  // (toWallClock, below), and the reporter sends them soon.
  const queue = new EventQueue(c.eventQueue, c.batchEvents, SYN_EVENT_SIZE, (records, count) => {
    toWallClock(records, count);
    reporter.scheduleFlush();
  });
  const policyEndpoint = parseEndpoint(c.policyAddr)!;
  const tls = { cert: c.tlsCert, key: c.tlsKey, ca: c.tlsCa, insecure: c.insecureTcp };
  const callback = c.callback ?? `unix:${c.controlSocket}`;
  const reporter = new Reporter(
    policyEndpoint,
    tls,
    queue,
    () => ({
      probeId: c.probeIdResolved,
      version: VERSION,
      interface: c.ifdev,
      ifindex: att.ifindex,
      ownAddresses: watcher.current,
      whitelistSelf: c.whitelistSelf,
      callbackEndpoint: callback,
      attachMode: attachModeOf(att.mode),
      programId,
      adopted: att.adopted,
      kernelScanPorts: kernelScanPorts(scan.config, c.kernelDetection),
      kernelScanWindow: { seconds: BigInt(scan.config.windowSeconds), nanos: 0 },
      shadow: scan.config.shadow,
    }),
    log,
    {
      onAllowlist: (prefixes) => applyPolicyAllowlist(att.dp, prefixes, log),
      onConfig: (m) => applyScanConfig(m),
    },
  );

  // Kernel timestamps are CLOCK_BOOTTIME; the policy wants wall-clock time.
  // The offset is re-read every second so that clock steps are followed. It
  // is added as two 32-bit halves with a carry (modulo 2^64, as a u64 field
  // wraps): a BigInt add per event allocated several BigInts per event, and
  // that and the garbage collection it caused were most of the probe's CPU
  // at high event rates (make bench-probe).
  let offsetLo = 0;
  let offsetHi = 0;
  const readOffset = () => {
    const offset = BigInt.asUintN(64, bootToUnixOffsetNs());
    offsetLo = Number(offset & 0xffff_ffffn);
    offsetHi = Number(offset >> 32n);
  };
  readOffset();
  const clockTimer = setInterval(readOffset, 1000);
  clockTimer.unref();
  const wordsPerRecord = SYN_EVENT_SIZE >>> 2;
  const toWallClock = (buf: Buffer, count: number) => {
    // A word view is ten times faster than Buffer reads; the queue's array
    // is allocated on its own and its records are 64 bytes, so the events
    // are aligned, but a view is only taken when they are.
    if (LITTLE_ENDIAN && buf.byteOffset % 4 === 0) {
      const words = new Uint32Array(buf.buffer, buf.byteOffset, count * wordsPerRecord);
      for (let i = 0; i < words.length; i += wordsPerRecord) {
        const lo = words[i]! + offsetLo;
        words[i] = lo;
        words[i + 1] = words[i + 1]! + offsetHi + (lo > 0xffff_ffff ? 1 : 0);
      }
      return;
    }
    for (let off = 0; off < count * SYN_EVENT_SIZE; off += SYN_EVENT_SIZE) {
      const lo = buf.readUInt32LE(off) + offsetLo;
      buf.writeUInt32LE(lo >>> 0, off);
      buf.writeUInt32LE((buf.readUInt32LE(off + 4) + offsetHi + (lo > 0xffff_ffff ? 1 : 0)) >>> 0, off + 4);
    }
  };

  const readerOf = (dp: Datapath) =>
    dp.reader({
      // The reader writes events straight into the queue's array; what does
      // not fit is counted lost there.
      sink: queue,
      onError: (err) => log.error({ err: err.message }, 'ring buffer read failed'),
      coalesceMs: c.eventCoalesceMs,
    });
  let reader = readerOf(att.dp);

  // SYNs the kernel could not even queue (ring buffer full) are lost events too.
  let ringbufFullSeen = att.dp.counters().ringbufFull;
  const lossTimer = setInterval(() => {
    const now = att.dp.counters().ringbufFull;
    if (now > ringbufFullSeen) {
      queue.addLost(Number(now - ringbufFullSeen));
      reporter.scheduleFlush();
    }
    ringbufFullSeen = now;
  }, 100);
  lossTimer.unref();

  const eventsLost = () => queue.lostTotal;
  const metrics = new ProbeMetrics(
    {
      get dp() {
        return att.dp;
      },
      queueDepth: () => queue.depth,
      queueCapacity: queue.capacity,
      eventsSent: () => reporter.stats().eventsSent,
      eventsLost,
      policyConnected: () => reporter.connected,
      blocks: () => blocks.size,
      blockCapacity: blocks.capacity,
      shadow: () => scan.config.shadow,
    },
    { interface: c.ifdev, mode: att.mode, programId, version: VERSION, pinsPrivate: att.pins === 'private' },
  );

  const status = {
    status: () => {
      const k = att.dp.counters();
      const uptimeMs = Date.now() - started.getTime();
      return {
        probeId: c.probeIdResolved,
        version: VERSION,
        interface: c.ifdev,
        ifindex: att.ifindex,
        attachMode: attachState === 'attached' ? attachModeOf(att.mode) : attachModeOf('none'),
        programId,
        adopted: att.adopted,
        ownAddresses: watcher.current,
        counters: {
          frames: k.frames,
          nonIp: k.nonIp,
          nonTcp: k.nonTcp,
          fragments: k.fragments,
          malformed: k.malformed,
          syn: k.syn,
          events: k.events,
          ringbufFull: k.ringbufFull,
          synDropped: k.synDropped,
          otherDropped: k.otherDropped,
          allowlisted: k.allowlisted,
          blockExpired: k.blockExpired,
          scanBlocked: k.scanBlocked,
          scanCapped: k.scanCapped,
          stealth: k.stealth,
          tinyFragments: k.tinyFragments,
          longChains: k.longChains,
          bogusSources: k.bogusSources,
          probeDropped: k.probeDropped,
          scanAdmitted: k.scanAdmitted,
          scanPromoted: k.scanPromoted,
          probationEvicted: k.probationEvicted,
          protectedEvicted: k.protectedEvicted,
          wouldDrop: k.wouldDrop,
          openPortSyn: k.openPortSyn,
        },
        queueDepth: queue.depth,
        queueCapacity: queue.capacity,
        eventsSent: BigInt(reporter.stats().eventsSent),
        eventsLost: BigInt(eventsLost()),
        policyConnected: reporter.connected,
        policyAddress: formatEndpoint(policyEndpoint),
        blocks: blocks.size,
        blockCapacity: blocks.capacity,
        started,
        uptime: { seconds: BigInt(Math.floor(uptimeMs / 1000)), nanos: (uptimeMs % 1000) * 1e6 },
        pinDir: att.pinDir,
        pinsPrivate: att.pins === 'private',
        scanConfig: toProto(scan.config),
        scanConfigOrigin: scan.origin,
        scanConfigReceived: scan.received,
        kernelScanPorts: kernelScanPorts(scan.config, c.kernelDetection),
      };
    },
  };

  /**
   * A configuration from the policy: checked (a bad one is logged and the
   * one in force kept), pinned for the next run, and, when it differs from
   * the one in force, put in the kernel by loading the program again with
   * its constants on the same pinned maps. The ring-buffer reader, the
   * blocks and the metrics move to the new program; events waiting in the
   * shared ring are read by the new reader; the old program is closed.
   */
  const applyScanConfig = (m: ProbeConfig) => {
    const checked = checkScanConfig(m);
    if (!checked.ok) {
      log.error({ reason: checked.reason }, "the policy's scan configuration is invalid; keeping the one in force");
      return;
    }
    const next = checked.value;
    const received = new Date();
    if (!sameScanConfig(next, scan.config)) {
      let old: Datapath;
      try {
        old = reload(att, { ...datapathOptions, scan: kernelScan(next) });
      } catch (e) {
        log.error({ err: (e as Error).message, scan: next }, "the XDP program could not be loaded with the policy's scan configuration; keeping the one in force");
        return;
      }
      reader.close();
      reader = readerOf(att.dp);
      reader.start();
      blocks.use(att.dp);
      if (next.ipv6Prefix !== scan.config.ipv6Prefix || next.ipv4Prefix !== scan.config.ipv4Prefix) {
        const moved = blocks.rekey(lengthsOf(scan.config), lengthsOf(next));
        log.warn(
          { ...moved, prefixes: lengthsOf(next), was: lengthsOf(scan.config) },
          'the blocklist re-keyed for the new prefix lengths: longer keys widened to their prefix, shorter ones removed (the policy re-sends its decisions)',
        );
      }
      programId = att.dp.program.info().id;
      metrics.programChanged(programId);
      old.close();
      log.info({ scan: next, was: scan.config, programId }, "the policy's scan configuration is in the kernel");
      if (next.shadow !== scan.config.shadow) {
        log.warn(next.shadow ? "SHADOW MODE (the policy's PW_ENFORCE=False): the XDP program drops nothing for a block" : 'enforcing: the XDP program drops for blocks again');
      }
    }
    scan = { config: next, origin: ConfigOrigin.CONFIG_ORIGIN_POLICY, received };
    try {
      att.dp.probeConfig.set(0, toRecord(next, received));
    } catch (e) {
      log.error({ err: (e as Error).message }, 'the scan configuration could not be pinned: a restarted probe runs the previous one until the policy sends it again');
    }
  };

  const tcpEndpoint = c.tcpAddr === undefined ? undefined : parseEndpoint(c.tcpAddr);
  const grpcServer = await startServer({
    sockets: [
      { path: c.socket, mode: 0o660, group: c.socketGroup, role: 'operator' },
      { path: c.controlSocket, mode: 0o660, group: c.controlGroup, role: 'policy' },
    ],
    tcp: tcpEndpoint?.kind === 'tcp' ? { endpoint: tcpEndpoint, tls, insecure: c.insecureTcp } : undefined,
    services: [
      {
        definition: ProbeService,
        implementation: probeService(blocks, status, log, (s) => metrics.blockApplySeconds.observe(s)),
        name: 'packetwatch.v1.Probe',
        roles: PROBE_ROLES,
      },
    ],
    reflection: { root: PROTO_ROOT, files: PROTO_FILES },
    log,
  });
  let metricsServer: Server | undefined;
  if (c.prometheusPort > 0) metricsServer = await serveMetrics(metrics, c.prometheusPort, c.metricsHost, log);

  // The interface can vanish (deleted, driver reload) and come back: follow
  // it, and say so through health, metrics and logs while it is unwatched.
  let attachState: AttachState = 'attached';
  const guard = setInterval(() => {
    const { state } = checkAttachment(att, { ifname: c.ifdev, mode: c.xdpMode, log });
    if (state === attachState) return;
    if (state !== 'attached') {
      log.error({ interface: c.ifdev, state }, 'NOT WATCHING: the XDP program is not attached to the interface');
    }
    attachState = state;
    metrics.attached.set(state === 'attached' ? 1 : 0);
    grpcServer.setServing(state === 'attached');
  }, c.addressPollMs);
  guard.unref();

  // One sweep at a time: a large blocklist can take longer than the period.
  let sweeping = false;
  const janitor = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    blocks
      .removeExpired()
      .then((n) => n > 0 && log.info({ removed: n }, 'removed expired blocks'))
      .catch((err: Error) => log.error({ err: err.message }, 'sweeping expired blocks failed'))
      .finally(() => (sweeping = false));
  }, 5000);
  janitor.unref();

  reader.start();
  reporter.start();
  watcher.start(c.addressPollMs);
  log.info({ interface: c.ifdev, mode: att.mode, programId, policy: formatEndpoint(policyEndpoint), socket: c.socket }, 'probe running');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping; the pinned datapath stays attached and keeps enforcing blocks');
    watcher.stop();
    reader.close();
    await reporter.stop(1000);
    await grpcServer.close(1000);
    await new Promise((r) => (metricsServer ? metricsServer.close(r) : r(undefined)));
    clearInterval(janitor);
    clearInterval(guard);
    att.link.close();
    att.dp.close();
    log.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
});
