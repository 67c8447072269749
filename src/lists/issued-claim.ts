import type { Claim } from './attempt-list-types.js';

/**
 * A claim as pgcoord hands it out: the public fields of {@link Claim}, plus where the claimed
 * row version is (its ctid) in a private field. The ctid is a hint only, never part of the API:
 * complete, completeAndClaim, release, fail and extend pass it back so the server reaches the row
 * without a primary-key probe (migration 0008 for completions), and an extend points it at the
 * row's new version. A claim without one (copied, spread, rebuilt from JSON), or whose row moved
 * since, takes the primary-key path. (A private field, not a WeakMap keyed by the claim: a busy
 * worker makes 100s of claims per round trip, and WeakMap entries cost ~4x the claim itself.)
 */
export class IssuedClaim implements Claim {
  item: string;
  token: string;
  attempts: number;
  leaseUntil: Date;
  #ctid: string;

  constructor(item: string, token: string, attempts: number, leaseUntil: Date, ctid: string) {
    this.item = item;
    this.token = token;
    this.attempts = attempts;
    this.leaseUntil = leaseUntil;
    this.#ctid = ctid;
  }

  /** The ctid hint of a claim pgcoord handed out, else undefined. */
  static hintOf(claim: object): string | undefined {
    return #ctid in claim ? (claim as IssuedClaim).#ctid : undefined;
  }

  /** Points a handed-out claim's hint at its row's new version (after an extend). */
  static rehint(claim: object, ctid: string): void {
    if (#ctid in claim) (claim as IssuedClaim).#ctid = ctid;
  }
}
