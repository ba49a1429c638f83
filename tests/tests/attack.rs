//! One minute of the attack loop (`tests/examples/attack.rs`, `scripts/attack` for longer runs):
//! a signed load while attackers send pathological bodies, rewritten replays, oversized headers,
//! slow bodies and forwarded floods; every signed request answered in time and applied once,
//! nothing of the attacker's in a genuine ledger, refusals within their ceiling, memory bounded.
//! In a test binary of its own, so that no other test shares the machine's two cores with it.

mod support;

#[test]
fn a_minute_of_attack_leaves_the_signed_load_untouched() {
    support::run_loop("attack", &["60"], "ATTACK_SEED");
}
