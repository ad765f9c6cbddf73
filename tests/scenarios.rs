//! Named stories, scripted step by step on the simulator: each pins one rule of the protocol.
//!
//! Every test drives the same [`Sim`] as the seed sweeps, but decides itself which frame arrives when,
//! who crashes, and what each detector reports, so the interesting interleaving happens for sure rather
//! than by luck. Each test says in one comment which rule it checks, and ends with the history checker.
//! A failing scenario panics with its story (every step, one line each).

mod sim;

use sim::check::Expect;
use sim::net::{CutMode, LifeId};
use sim::Sim;
use tom::protocol::Phase;

/// Delivers frames from `from` to `to`, oldest first, until one of `kind` has been delivered.
fn deliver_through(sim: &mut Sim, from: u16, to: u16, kind: &str) {
    loop {
        let Some(next) = sim.next_kind(from, to) else {
            sim.fail(&format!("no {kind} queued from {from} to {to}"));
        };
        sim.deliver_next(from, to);
        if next == kind {
            return;
        }
    }
}

/// Everyone sends and receives everything; no timers.
fn settle_quietly(sim: &mut Sim) {
    sim.run_until_quiet();
}

// ---- issue 3: the normal case ---------------------------------------------------------------------

/// Equal Lamport times are ordered by the origin's rank, identically everywhere.
#[test]
fn tie_break_equal_lamport_times_orders_by_rank() {
    let mut sim = Sim::new(3);
    let from_2 = sim.multicast(2);
    let from_1 = sim.multicast(1);
    settle_quietly(&mut sim);
    for rank in 1..=3 {
        assert_eq!(sim.delivered(rank), vec![from_1.clone(), from_2.clone()]);
    }
    let times: Vec<u64> = sim.lives[0].history.deliveries.iter().map(|d| d.lamport).collect();
    assert_eq!(times, vec![1, 1], "both were multicast at Lamport time 1");
    sim.check(Expect::Settled);
}

/// An acknowledgement that overtakes the message it acknowledges (on another link) delivers nothing
/// until the message itself arrives.
#[test]
fn ack_arrives_before_the_message_it_acknowledges() {
    let mut sim = Sim::new(3);
    let m = sim.multicast(1);
    sim.deliver_next(1, 2);
    sim.flush(2);
    // 2's acknowledgement of m reaches 3 first; 1's data to 3 is still held on its link.
    deliver_through(&mut sim, 2, 3, "ack");
    sim.flush(3);
    let held = (sim.current(1), sim.current(3));
    settle_holding(&mut sim, held);
    assert!(sim.delivered(3).is_empty(), "3 cannot deliver what it does not hold");
    assert!(
        sim.delivered(1).is_empty() && sim.delivered(2).is_empty(),
        "nobody delivers m before 3 holds it"
    );
    sim.deliver_all(1, 3);
    settle_quietly(&mut sim);
    for rank in 1..=3 {
        assert_eq!(sim.delivered(rank), vec![m.clone()]);
    }
    sim.check(Expect::Settled);
}

/// Like [`Sim::run_until_quiet`] but leaves the frames of one link (between two given lives) waiting.
fn settle_holding(sim: &mut Sim, held: (LifeId, LifeId)) {
    for _ in 0..10_000 {
        let links: Vec<_> = sim.net.busy_links().into_iter().filter(|l| *l != held).collect();
        match links.first() {
            Some((from, to)) => {
                sim.deliver_between(*from, *to);
            }
            None if sim.flush_all() => {}
            None => return,
        }
    }
    sim.fail("frames kept flowing while one link was held");
}

/// A member that never multicasts still acknowledges, and the others wait for it.
#[test]
fn member_that_only_receives_still_acknowledges() {
    let mut sim = Sim::new(3);
    let a = sim.multicast(1);
    let b = sim.multicast(2);
    // Data everywhere and the acks of 1 and 2, but 3 has not flushed: nobody may deliver yet.
    for (from, to) in [(1, 2), (1, 3), (2, 1), (2, 3)] {
        sim.deliver_all(from, to);
    }
    sim.flush(1);
    sim.flush(2);
    for (from, to) in [(1, 2), (2, 1)] {
        sim.deliver_all(from, to);
    }
    assert!(
        sim.delivered(1).is_empty() && sim.delivered(2).is_empty(),
        "the silent member's acknowledgement is still missing"
    );
    sim.flush(3);
    assert!(sim.queued(3, 1) > 0, "3 acknowledges without multicasting");
    settle_quietly(&mut sim);
    for rank in 1..=3 {
        assert_eq!(sim.delivered(rank), vec![a.clone(), b.clone()]);
    }
    sim.check(Expect::Settled);
}

// ---- issue 5: crashes -----------------------------------------------------------------------------

/// A member that crashes before its message left loses only that message; the rest go on.
#[test]
fn crash_before_sending() {
    let mut sim = Sim::new(3);
    let early = sim.multicast(1);
    settle_quietly(&mut sim);
    let lost = sim.multicast(3);
    sim.crash(3);
    sim.suspect_everywhere(3);
    settle_quietly(&mut sim);
    let after = sim.multicast(2);
    settle_quietly(&mut sim);
    for rank in 1..=2 {
        assert_eq!(sim.view_of(rank), vec![1, 2]);
        assert_eq!(sim.delivered(rank), vec![early.clone(), after.clone()]);
        assert!(!sim.delivered(rank).contains(&lost));
    }
    sim.check(Expect::Settled);
}

/// A message that reached only some survivors before its origin crashed is delivered by all of them
/// (the view change carries it) — all or none.
#[test]
fn crash_after_sending_to_some_only() {
    let mut sim = Sim::new(4);
    let m = sim.multicast(4);
    sim.deliver_next(4, 1);
    sim.crash(4);
    sim.suspect_everywhere(4);
    settle_quietly(&mut sim);
    for rank in 1..=3 {
        assert_eq!(sim.view_of(rank), vec![1, 2, 3]);
        assert_eq!(
            sim.delivered(rank),
            vec![m.clone()],
            "member 1 held it: all survivors deliver it"
        );
    }
    sim.check(Expect::Settled);
}

/// Once one member delivered a message, every survivor delivers it, even if its origin crashes before
/// delivering it itself (uniform agreement).
#[test]
fn crash_after_others_acked_before_own_delivery() {
    let mut sim = Sim::new(3);
    let m = sim.multicast(3);
    sim.deliver_next(3, 1);
    sim.deliver_next(3, 2);
    sim.flush(1);
    sim.flush(2);
    sim.deliver_next(2, 1);
    assert_eq!(sim.delivered(1), vec![m.clone()], "1 has every acknowledgement");
    assert!(sim.delivered(2).is_empty() && sim.delivered(3).is_empty());
    sim.crash(3);
    sim.suspect_everywhere(3);
    settle_quietly(&mut sim);
    assert_eq!(sim.delivered(2), vec![m], "2 must deliver what 1 delivered");
    sim.check(Expect::Settled);
}

/// The coordinator dies while passing on a crashed member's message in its proposal; the next
/// coordinator finds the accepted proposal and delivers the same message (Paxos re-proposal).
#[test]
fn crash_while_passing_on_anothers_messages() {
    let mut sim = Sim::new(5);
    let m = sim.multicast(5);
    sim.deliver_next(5, 1);
    sim.crash(5);
    sim.suspect_everywhere(5);
    for rank in 2..=4 {
        deliver_through(&mut sim, 1, rank, "prepare");
        deliver_through(&mut sim, rank, 1, "promise");
    }
    // 1 proposed a view carrying m; only 2 accepts before 1 dies.
    deliver_through(&mut sim, 1, 2, "accept");
    sim.crash(1);
    sim.suspect_everywhere(1);
    settle_quietly(&mut sim);
    for rank in 2..=4 {
        assert_eq!(sim.view_of(rank), vec![2, 3, 4]);
        assert_eq!(sim.delivered(rank), vec![m.clone()]);
    }
    sim.check(Expect::Settled);
}

/// A member that crashes after promising in a view change is removed by the next one; order and
/// atomicity hold across both.
#[test]
fn crash_during_view_change() {
    let mut sim = Sim::new(5);
    sim.multicast(1);
    sim.multicast(2);
    settle_quietly(&mut sim);
    sim.multicast(4);
    sim.deliver_next(4, 2);
    sim.crash(5);
    sim.suspect_everywhere(5);
    deliver_through(&mut sim, 1, 4, "prepare");
    sim.crash_keeping_in_flight(4);
    settle_quietly(&mut sim);
    sim.suspect_everywhere(4);
    settle_quietly(&mut sim);
    for rank in 1..=3 {
        assert_eq!(sim.view_of(rank), vec![1, 2, 3]);
    }
    sim.multicast(3);
    settle_quietly(&mut sim);
    sim.check(Expect::Settled);
}

/// Two members crashing in the same instant are removed by one view change.
#[test]
fn several_crashes_at_once() {
    let mut sim = Sim::new(5);
    for rank in 1..=5 {
        sim.multicast(rank);
    }
    sim.deliver_next(4, 1);
    sim.deliver_next(5, 2);
    sim.crash(4);
    sim.crash(5);
    sim.suspect_everywhere(4);
    sim.suspect_everywhere(5);
    settle_quietly(&mut sim);
    for rank in 1..=3 {
        assert_eq!(sim.view_of(rank), vec![1, 2, 3]);
    }
    assert_eq!(sim.delivered(1), sim.delivered(3));
    sim.check(Expect::Settled);
}

/// 5 → 4 → 3 → 2 → 1: each crash is one view change, the quorum counted in the view it replaces, and
/// the last step works because the survivor is the lower rank of the two.
#[test]
fn group_shrinks_crash_by_crash() {
    let mut sim = Sim::new(5);
    for dying in (2..=5).rev() {
        for rank in 1..=dying {
            sim.multicast(rank);
        }
        sim.deliver_next(dying, 1);
        sim.crash(dying);
        sim.suspect_everywhere(dying);
        settle_quietly(&mut sim);
        assert_eq!(sim.view_of(1), (1..dying).collect::<Vec<u16>>());
        sim.check(Expect::Settled);
    }
    let last = sim.multicast(1);
    settle_quietly(&mut sim);
    assert_eq!(sim.delivered(1).last(), Some(&last), "a group of one goes on");
    sim.check(Expect::Settled);
}

// ---- issue 6: false suspicions and partitions -------------------------------------------------------

/// A live member wrongly suspected is excluded, learns it, stops, and never delivers anything outside
/// the group's order.
#[test]
fn false_suspicion_of_live_member_excludes_it_safely() {
    let mut sim = Sim::new(3);
    sim.multicast(3);
    sim.multicast(1);
    sim.deliver_next(3, 1);
    sim.suspect(1, 3);
    settle_quietly(&mut sim);
    assert_eq!(sim.view_of(1), vec![1, 2]);
    assert_eq!(sim.phase(3), Some(Phase::Excluded), "3 learns it was excluded");
    sim.multicast(3);
    sim.multicast(2);
    settle_quietly(&mut sim);
    sim.check(Expect::Settled);
}

/// The minority side of a partition cannot tell a crash from a cut: it stops rather than deliver a
/// second history, while the majority goes on.
#[test]
fn minority_side_of_partition_stops() {
    let mut sim = Sim::new(5);
    sim.multicast(1);
    settle_quietly(&mut sim);
    sim.partition(&[1, 2], &[3, 4, 5], CutMode::Drop);
    let minority = sim.multicast(1);
    let majority = sim.multicast(4);
    for (at, of) in [(1, 3), (1, 4), (1, 5), (2, 3), (2, 4), (2, 5)] {
        sim.suspect(at, of);
    }
    for (at, of) in [(3, 1), (4, 1), (5, 2)] {
        sim.suspect(at, of);
    }
    settle_quietly(&mut sim);
    assert_eq!(sim.phase(1), Some(Phase::Excluded));
    assert_eq!(sim.phase(2), Some(Phase::Excluded));
    assert_eq!(sim.view_of(3), vec![3, 4, 5]);
    sim.heal();
    settle_quietly(&mut sim);
    for rank in 3..=5 {
        assert!(sim.delivered(rank).contains(&majority));
        assert!(!sim.delivered(rank).contains(&minority));
    }
    assert!(!sim.delivered(1).contains(&minority));
    sim.check(Expect::Settled);
}

/// A member told that it is itself suspected (by a member that then crashes, having told only some)
/// keeps coordinating: the group must still agree on who runs the view change and move on.
#[test]
fn member_told_it_is_suspected_by_a_member_that_then_crashes() {
    let mut sim = Sim::new(5);
    sim.multicast(3);
    settle_quietly(&mut sim);
    // 2 wrongly suspects 1 and tells everyone; only 1 and 4 hear it before 2 dies.
    sim.suspect(2, 1);
    deliver_through(&mut sim, 2, 1, "suspect");
    deliver_through(&mut sim, 2, 4, "suspect");
    sim.crash(2);
    sim.suspect_everywhere(2);
    sim.run_until_quiet();
    sim.tick_all(200);
    sim.settle(50_000);
    sim.check(Expect::Settled);
}

/// Whatever a member delivers in a view after promising in its view change must be in the decided
/// cut; otherwise its count passes the next view's start position and a joiner would disagree with it.
#[test]
fn delivery_after_promise_stays_within_the_cut() {
    let mut sim = Sim::new(3);
    sim.crash(3);
    sim.suspect_everywhere(3);
    settle_quietly(&mut sim);
    assert_eq!(sim.view_of(1), vec![1, 2]);
    // 2's message is on its way to 1 when a join request makes 1 start a view change.
    sim.multicast(2);
    sim.restart(3);
    sim.connect(3, 1);
    deliver_through(&mut sim, 3, 1, "join-request");
    // 1 has promised (to its own ballot); now the data arrives, and 1 holds every ack for it.
    deliver_through(&mut sim, 2, 1, "data");
    sim.crash(2);
    sim.suspect(1, 2);
    settle_quietly(&mut sim);
    sim.tick_all(100);
    sim.run_until_quiet();
    sim.check(Expect::Safety);
}

// ---- issue 7: rejoin ----------------------------------------------------------------------------

/// A restarted rank rejoins as a new incarnation at an agreed position and delivers exactly the
/// group's order from the next position on.
#[test]
fn rejoin_after_crash_gets_exact_suffix() {
    let mut sim = Sim::new(3);
    sim.multicast(1);
    sim.multicast(3);
    settle_quietly(&mut sim);
    sim.crash(3);
    sim.suspect_everywhere(3);
    sim.multicast(2);
    settle_quietly(&mut sim);
    sim.restart(3);
    sim.connect(3, 1);
    sim.connect(3, 2);
    sim.multicast(1);
    settle_quietly(&mut sim);
    assert_eq!(sim.phase(3), Some(Phase::Member), "3 is back");
    let joined = sim.lives[sim.current(3)].history.joined.expect("3 printed Joined");
    sim.multicast(3);
    sim.multicast(2);
    settle_quietly(&mut sim);
    let group = sim.delivered(1);
    assert_eq!(sim.delivered(3), group[joined as usize..].to_vec());
    assert!(!sim.delivered(3).is_empty(), "the new life delivers after its join");
    sim.check(Expect::Settled);
}

/// A frame the old life sent before it crashed, arriving after the new life joined, is not taken for
/// the new life's and delivers nothing twice.
#[test]
fn stale_frame_from_old_incarnation_is_ignored() {
    let mut sim = Sim::new(3);
    let m = sim.multicast(3);
    sim.deliver_next(3, 2);
    let old_3 = sim.current(3);
    let at_1 = sim.current(1);
    // The old life's copy of m to 1 stays on the wire, past the crash, the view change and the rejoin.
    sim.crash_keeping_in_flight(3);
    sim.suspect(1, 3);
    sim.suspect(2, 3);
    settle_holding(&mut sim, (old_3, at_1));
    sim.restart(3);
    sim.connect(3, 1);
    sim.connect(3, 2);
    settle_holding(&mut sim, (old_3, at_1));
    assert_eq!(sim.phase(3), Some(Phase::Member));
    assert!(sim.net.queued(old_3, at_1) > 0, "the stale frame is still in flight");
    sim.deliver_between(old_3, at_1);
    sim.multicast(3);
    settle_quietly(&mut sim);
    for rank in 1..=2 {
        let copies = sim.delivered(rank).iter().filter(|p| **p == m).count();
        assert_eq!(copies, 1, "{rank} delivers m once, via the view change");
    }
    sim.check(Expect::Settled);
}

/// A clean leave is a view change like any other, never taken for a crash: the leaver's messages are
/// all delivered first, and it ends with `Left`, not `Excluded`.
#[test]
fn clean_leave_delivers_own_messages_first() {
    let mut sim = Sim::new(3);
    let last_word = sim.multicast(3);
    sim.leave(3);
    settle_quietly(&mut sim);
    assert_eq!(sim.phase(3), Some(Phase::Left));
    assert_eq!(sim.view_of(1), vec![1, 2]);
    for rank in 1..=3 {
        assert_eq!(sim.delivered(rank), vec![last_word.clone()]);
    }
    sim.check(Expect::Settled);
}
