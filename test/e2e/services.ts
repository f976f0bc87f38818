// Probe and policy as real processes inside the victim's network namespace,
// as `make run` starts them (bench/services.ts, shared with the benches).
export { ServiceProcess, Services, type ServicesOptions, detachProbe, listAllBlocks, listAllDecisions, listeningPongServer, startPongServer } from '../../bench/services.js';
