// What the tests and the benches share. Probe and policy as processes
// (./services) and the stack the attack benches run (./stack) are entries of
// their own: they load the built protocol, BPF and libbpf-ts packages.
export { Cleanup } from './cleanup.js';
export { WALL_OFFSET_SLACK_NS, withinRun } from './clock.js';
export { type CapturedFrame, type NgInterface, PcapWriter, pcapFile, pcapHeader, pcapRecord, pcapngSection, sll, sll2 } from './capture.js';
export { type CpuShares, type CpuSnapshot, cpuShares, cpuSnapshot, machineCpu, ownCpu, processCpu } from './cpu.js';
export { FRAMES_PER_SLICE, MAX_SLICES_OWED, SLICE_MS, XDP_PASS, drive, runOnce } from './drive.js';
export { HarnessError, commandError } from './errors.js';
export { type NamespacePair, TEST_BPFFS, type TestNet, createNamespacePair, createTestNet, namespacePids, xdpAttached } from './namespaces.js';
export { freePort } from './ports.js';
export { sleep, waitFor } from './wait.js';
