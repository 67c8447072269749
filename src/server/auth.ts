import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Bearer-token check in constant time: both sides are hashed first, so the comparison is of two
 * equal-length digests and neither the token's length nor its prefix leaks through timing.
 */
export function makeTokenCheck(token: string): (authorization: string | undefined) => boolean {
  const expected = createHash('sha256').update(token, 'utf8').digest();
  return (authorization) => {
    const given =
      typeof authorization === 'string' && /^Bearer /i.test(authorization)
        ? authorization.slice(7).trim()
        : '';
    const digest = createHash('sha256').update(given, 'utf8').digest();
    // Evaluate the comparison even for an empty token, so a missing header costs the same.
    const same = timingSafeEqual(digest, expected);
    return same && given.length > 0;
  };
}
