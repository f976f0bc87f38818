import { describe, expect, it } from 'vitest';
import { explainDetails } from '../src/rpc.js';

describe('rpc: channel errors a person can act on', () => {
  it('shortens grpc-js connection errors and explains the errno', () => {
    expect(explainDetails('No connection established. Last error: Error: connect ENOENT /run/packetwatch/policy.sock. Resolution note: ')).toBe(
      'connect ENOENT /run/packetwatch/policy.sock: no socket there: is the service running, and is this its address?',
    );
    expect(explainDetails('No connection established. Last error: Error: connect EACCES /run/packetwatch/probe.sock. Resolution note: ')).toBe(
      "connect EACCES /run/packetwatch/probe.sock: permission denied: run as root or as a member of the socket's group (packetwatch)",
    );
    expect(explainDetails('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ')).toBe(
      'connect ECONNREFUSED 127.0.0.1:1: nothing is listening there',
    );
  });

  it('leaves server messages as they are', () => {
    expect(explainDetails('192.0.2.1 is allowlisted and cannot be blocked')).toBe('192.0.2.1 is allowlisted and cannot be blocked');
    expect(explainDetails('Deadline exceeded after 0.301s')).toBe('Deadline exceeded after 0.301s');
  });
});
