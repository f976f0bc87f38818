// What an operator's address or prefix names: the source it falls in under
// PW_IPV6_PREFIX and PW_IPV4_PREFIX. One rule for the policy's Block,
// Unblock and Watch and the probe's BlockIp and UnblockIp: an address, or a
// prefix longer than its family's length, widens to the source; a shorter
// prefix is INVALID_ARGUMENT naming the length (a source is looked up at that
// one length, in the kernel as in the policy).
import { AddressError, type Prefix, type SourcePrefixes, formatSource, isV4Mapped, parsePrefix, sourcePrefix } from './address.js';
import { GrpcStatus, ServerError } from './grpc.js';

export interface NamedSource {
  /** The source's text (a decision's ip): "2001:db8:1:2::/64", or the address at whole length. */
  text: string;
  /** The source's prefix, at the configured length: its addr is the blocklist key. */
  prefix: Prefix;
  /** The address given, when one was (not a prefix). */
  address: Buffer | undefined;
  /** The source covers more than was named (an address or a longer prefix, widened). */
  widened: boolean;
}

/** Whether a prefix is of IPv4 addresses (IPv4-mapped, /96 or longer). */
export function isV4Prefix(p: Prefix): boolean {
  return p.prefixLen >= 96 && isV4Mapped(p.addr);
}

/** The length, in bits of the 16-byte form, sources of p's family are keyed by. */
export function sourceLengthFor(p: Prefix, lengths: SourcePrefixes): number {
  return isV4Prefix(p) ? 96 + lengths.ipv4 : lengths.ipv6;
}

/** The source `text` (an address or a prefix) names under `lengths`; ServerError INVALID_ARGUMENT when it names none. */
export function namedSource(text: string, lengths: SourcePrefixes): NamedSource {
  if (text.length > 64) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid address: ${text.length} characters is not an address or prefix`);
  let given: Prefix;
  try {
    given = parsePrefix(text);
  } catch (e) {
    if (e instanceof AddressError) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, e.message);
    throw e;
  }
  const len = sourceLengthFor(given, lengths);
  if (given.prefixLen < len) {
    const [family, shown, setting] = isV4Prefix(given) ? ['IPv4', len - 96, 'PW_IPV4_PREFIX'] : ['IPv6', len, 'PW_IPV6_PREFIX'];
    throw new ServerError(
      GrpcStatus.INVALID_ARGUMENT,
      `${text} is shorter than the /${shown} ${family} sources are blocked by (${setting}): give a /${shown} or longer, or an address`,
    );
  }
  const prefix = sourcePrefix(given.addr, lengths);
  return { text: formatSource(prefix), prefix, address: text.includes('/') ? undefined : given.addr, widened: given.prefixLen > len };
}
