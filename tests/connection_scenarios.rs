//! Named stories about connections: the rules of `tom::endpoint` (which connection speaks for which
//! life, connections of processes asking to rejoin, early frames, closes, dials, the state transfer)
//! that broke in the past, each scripted on the same [`Sim`] as the seed sweeps, whose every life runs
//! an `Endpoint`.
//!
//! The first three are runtime bugs found before the endpoint existed; the others are bugs the
//! simulator found in the endpoint once it drove it (the seed that found each is named). Each test says
//! which rule it pins and ends with the history checker; each fails if its rule is reverted in
//! `src/endpoint`. The last pins a rule of the simulator's connections (`tests/sim/net.rs`) where a
//! sweep found them unlike TCP.

mod sim;

use sim::check::Expect;
use sim::net::{ConnKey, CutMode, DelayProfile, LifeId};
use sim::{Action, Knobs, PortMode, Sim, FIRST_PORT};
use tom::protocol::Phase;

/// The id of the view `life` installed last.
fn view_id(sim: &Sim, life: LifeId) -> u64 {
    sim.lives[life].history.views.last().map_or(0, |v| v.id.0)
}

/// The one connection between two lives.
fn only_conn(sim: &Sim, a: LifeId, b: LifeId) -> ConnKey {
    let conns = sim.conns_between(a, b);
    assert_eq!(
        conns.len(),
        1,
        "one connection between {} and {}",
        sim.name(a),
        sim.name(b)
    );
    conns[0]
}

/// A group of `size` that hands the state to returning members in chunks of `chunk_bytes`, every
/// frame arriving in the step after it was sent.
fn transferring_state(size: u16, chunk_bytes: usize) -> Sim {
    let knobs = Knobs {
        state_transfer: true,
        snapshot_chunk_bytes: chunk_bytes,
        ..Knobs::default()
    };
    let delay = DelayProfile {
        max_steps: 0,
        slow_percent: 0,
    };
    Sim::with_knobs(size, 0, delay, knobs)
}

/// Asserts that both ends hold `conn` as the member connection of the life at the other end.
fn assert_member_conn(sim: &Sim, conn: ConnKey, a: LifeId, b: LifeId) {
    for (at, of) in [(a, b), (b, a)] {
        let watch = sim.watch(at, conn);
        let of_life = sim.lives[of].node().map(|n| n.me());
        if !watch.is_some_and(|w| w.is_member && w.life == of_life) {
            sim.fail(&format!(
                "{} does not hold c{conn} as the member connection of {}: {watch:?}",
                sim.name(at),
                sim.name(of)
            ));
        }
    }
}

/// Past runtime bug 1 — a joiner's only connection closed by a peer admitted first. Rank 4 restarts
/// first and finds only rank 2's dead address; rank 2 restarts next and dials 4's new process (one
/// member per host: it bound its rank's port again, where 2's roster still lists 4's old life). View 3
/// admits 2, view 4 admits 4. At its first view, 2 keeps its dial to the still-joining 4 (its process is
/// not listed: the dial stands as asking) instead of closing it; at view 4 both take it. Without the
/// helper, 4 would not even learn 2's new address from it.
#[test]
fn a_life_admitted_first_keeps_its_dial_to_a_rank_still_joining() {
    let mut sim = Sim::new(5);
    sim.port_mode = PortMode::SameAsRank;
    sim.apply(Action::HelperDown);
    sim.crash(2);
    sim.crash(4);
    sim.suspect_everywhere(2);
    sim.suspect_everywhere(4);
    sim.run_until_quiet();
    assert_eq!(sim.view_of(1), vec![1, 3, 5]);
    // 4 comes back first: the address it has for 2 is dead.
    sim.restart(4);
    let four = sim.current(4);
    sim.dial_address(4, 2, FIRST_PORT + 1);
    for to in [1, 3, 5] {
        sim.connect(4, to);
    }
    // 2 comes back next: the address it has for 4 (4's old life) reaches 4's new process.
    sim.restart(2);
    let two = sim.current(2);
    sim.dial_address(2, 4, FIRST_PORT + 3);
    for to in [1, 3, 5] {
        sim.connect(2, to);
    }
    let dial = only_conn(&sim, two, four);
    // View 3 admits 2 while 4's requests wait on their links.
    let held: Vec<(LifeId, LifeId)> = [1, 3, 5].iter().map(|r| (four, sim.current(*r))).collect();
    sim.settle_except(&held);
    assert_eq!(sim.view_of(1), vec![1, 2, 3, 5], "view 3 admits 2");
    assert_eq!(view_id(&sim, two), 3);
    assert!(
        sim.watch(two, dial).is_some_and(|w| !w.is_member),
        "2 keeps its dial to 4's new process, which its view does not list"
    );
    // Then view 4 admits 4; 2 and 4 speak on 2's dial, and nobody dials anyone.
    sim.settle_detecting();
    assert_eq!(sim.view_of(1), vec![1, 2, 3, 4, 5]);
    assert_eq!(view_id(&sim, four), 4);
    assert_member_conn(&sim, dial, two, four);
    assert!(!sim.story_mentions("asks to dial"), "no life had to dial another");
    sim.multicast(2);
    sim.multicast(4);
    sim.settle_detecting();
    sim.check(Expect::Settled);
}

/// Past runtime bug 2 — a joiner's first frames dropped. Member 2 has not yet installed the view
/// admitting 3 when 3's first frames arrive on the connection 3 dialled while joining (its relayed
/// decision, then its first data). The decision comes first on that connection and names 3's process
/// as a member of the view it decides: 2's core takes it and installs the view, so 3's data that follows
/// is a member's (until the explorer's `a_decision_relayed_by_a_process_it_admits_is_installed`, 2 kept
/// both and waited for 1's decision). Dropped, 2 would miss 3's first message, and the group would
/// never deliver it (nor anything after it).
#[test]
fn a_joiners_first_frames_before_the_admitting_view_are_taken_in_order() {
    let mut sim = Sim::new(3);
    sim.crash(3);
    sim.suspect_everywhere(3);
    sim.run_until_quiet();
    assert_eq!(sim.view_of(1), vec![1, 2]);
    sim.restart(3);
    sim.connect(3, 1);
    sim.connect(3, 2);
    let (one, two, three) = (sim.current(1), sim.current(2), sim.current(3));
    // The admission runs with 1's frames to 2 held back but for the ballot.
    let held = [(one, two)];
    sim.settle_except(&held);
    sim.deliver_through(one, two, "prepare");
    sim.settle_except(&held);
    sim.deliver_through(one, two, "accept");
    sim.settle_except(&held);
    assert_eq!(
        sim.lives[three].phase(),
        Some(Phase::Member),
        "3 installed the view admitting it"
    );
    // 3's first message reaches 2 after 3's relayed decision, on the connection 3 dialled while joining.
    let first = sim.multicast(3);
    sim.settle_except(&held);
    assert!(sim.queued(3, 2) == 0, "3's frames reached 2");
    assert_eq!(view_id(&sim, two), 3, "2 installed the view on 3's relayed decision");
    // 1's decision reaches 2 at last (an old one now).
    while sim.net.queued(one, two) > 0 {
        sim.deliver_between(one, two);
    }
    sim.settle_detecting();
    for rank in 1..=3 {
        assert!(
            sim.delivered(rank).contains(&first),
            "rank {rank} delivers 3's first message"
        );
    }
    sim.multicast(3);
    sim.settle_detecting();
    sim.check(Expect::Settled);
}

/// Past runtime bug 3 — a leaver's connection closed before the relayed decision. At the install of
/// the view without the leaver, every member closes its connection to the departed life only after the
/// decision queued on it went out (`to_close`, carried out after the outputs): the leaver learns it
/// left and ends `Left`, not `Excluded` (nor stuck).
#[test]
fn a_leavers_connection_closes_only_after_the_relayed_decision() {
    let mut sim = Sim::new(3);
    let last_word = sim.multicast(3);
    sim.leave(3);
    sim.run_until_quiet();
    assert_eq!(sim.phase(3), Some(Phase::Left), "3 learns it left");
    assert_eq!(sim.view_of(1), vec![1, 2]);
    for rank in 1..=3 {
        assert_eq!(sim.delivered(rank), vec![last_word.clone()]);
    }
    sim.settle_detecting();
    assert_eq!(sim.lives[sim.current(3)].history.end, sim::check::End::Left);
    sim.check(Expect::Settled);
}

/// Found by the simulator (rejoin family, seed 985; seed 1179 with only this rule reverted), a safety bug: frames for a life must never go on a
/// connection that speaks for another process of its rank. 4's new process dialled rank 2's address
/// and reached 2's losing duplicate process (one of two started for rank 2); the view that admits 4
/// lists 2's other process. At that install the core's outputs (the relayed decision, 4's first data)
/// come before the connections are sorted out: they must be kept for the listed life until its
/// connection comes, not written on the dial to the duplicate. Otherwise 2 misses 4's first message,
/// and since 4's later acknowledgements reach 2 on another connection, 2 delivered a message of a
/// larger stamp before it: two members disagreed on a position.
#[test]
fn frames_for_a_life_never_go_to_another_process_of_its_rank() {
    let mut sim = Sim::new(4);
    sim.port_mode = PortMode::SameAsRank;
    sim.crash(2);
    sim.crash(4);
    sim.suspect_everywhere(2);
    sim.suspect_everywhere(4);
    sim.run_until_quiet();
    assert_eq!(sim.view_of(1), vec![1, 3]);
    // Two processes start for rank 2: the first binds 2's port and never reaches the group; the second
    // (on another port) is admitted.
    sim.restart(2);
    let duplicate = sim.current(2);
    sim.restart(2);
    let two = sim.current(2);
    assert_eq!(sim.lives[duplicate].port, FIRST_PORT + 1);
    sim.connect(2, 1);
    sim.connect(2, 3);
    sim.run_until_quiet();
    assert_eq!(sim.lives[two].phase(), Some(Phase::Member));
    // 4 comes back; rank 2's address it has reaches the duplicate.
    sim.restart(4);
    let four = sim.current(4);
    sim.dial_address(4, 2, FIRST_PORT + 1);
    sim.connect(4, 1);
    sim.connect(4, 3);
    assert_eq!(only_conn(&sim, four, duplicate), only_conn(&sim, duplicate, four));
    // 4's first message waits in its backlog: it goes out with the install of the view admitting 4.
    let first = sim.multicast(4);
    sim.run_until_quiet();
    assert_eq!(sim.lives[four].phase(), Some(Phase::Member));
    // The duplicate gives up (its join timeout) once the others settle.
    sim.settle_except(&[]);
    sim.apply(Action::GiveUp { node: duplicate });
    sim.settle_detecting();
    for rank in [1, 2, 3, 4] {
        assert!(
            sim.delivered(rank).contains(&first),
            "rank {rank} delivers 4's first message"
        );
    }
    assert!(
        !sim.lives[duplicate]
            .history
            .deliveries
            .iter()
            .any(|d| d.payload == first),
        "the duplicate never takes part"
    );
    sim.multicast(2);
    sim.multicast(4);
    sim.settle_detecting();
    sim.check(Expect::Settled);
}

/// Found by the simulator (rejoin family, seeds 318 and 633 with this rule reverted): a life admitted while a view change starts at once
/// (here: a member crashes right after) must dial the members it has no connection to during the change
/// too. 1 comes back through 2 and 3 only; as the lowest rank it coordinates the change that removes the
/// crashed 3, and its prepare for 4 and 5 waits for connections only it can make (it is the later
/// life). Dials and the unconnected suspicion used to run in a calm view only: the change never ended.
#[test]
fn a_life_admitted_into_a_view_change_dials_its_unconnected_members() {
    let mut sim = Sim::new(5);
    sim.crash(1);
    sim.suspect_everywhere(1);
    sim.run_until_quiet();
    assert_eq!(sim.view_of(2), vec![2, 3, 4, 5]);
    sim.restart(1);
    sim.connect(1, 2);
    sim.connect(1, 3);
    sim.run_until_quiet();
    let one = sim.current(1);
    assert_eq!(
        sim.lives[one].phase(),
        Some(Phase::Member),
        "1 is back, connected to 2 and 3 only"
    );
    // Before 1's first tick, 3 crashes: a view change starts, which 1 coordinates.
    sim.crash(3);
    sim.suspect_everywhere(3);
    sim.run_until_quiet();
    assert_eq!(sim.lives[one].phase(), Some(Phase::Changing));
    // Time passes (a few ticks): 1 dials 4 and 5 and the change goes through.
    for _ in 0..5 {
        sim.tick_all(1);
        sim.run_until_quiet();
    }
    assert_eq!(
        sim.view_of(2),
        vec![1, 2, 4, 5],
        "the change that removes 3 is done, without other losses"
    );
    assert_eq!(sim.view_of(1), vec![1, 2, 4, 5]);
    sim.multicast(1);
    sim.settle_detecting();
    assert_eq!(sim.view_of(4), vec![1, 2, 4, 5]);
    sim.check(Expect::Settled);
}

/// Found by the simulator (rejoin family, seeds 31, 664, 973 with this rule reverted): the sponsor of a returning member that has no
/// connection to it yet, when the view admitting it is installed, hands it the state once the newcomer
/// connects (the newcomer is the later life: it dials). Meanwhile the sponsor's events wait, so its
/// state stays the state at the join position. It used to hand the state to nobody: the newcomer waited
/// for its snapshot for ever.
#[test]
fn a_sponsor_hands_the_state_over_once_the_newcomer_connects() {
    let mut sim = transferring_state(3, 8);
    for rank in 1..=3 {
        sim.multicast(rank);
    }
    sim.run_until_quiet();
    sim.crash(3);
    sim.suspect_everywhere(3);
    sim.run_until_quiet();
    // 3 comes back through 2 only; 1 sponsors it.
    sim.restart(3);
    sim.connect(3, 2);
    sim.run_until_quiet();
    let (one, three) = (sim.current(1), sim.current(3));
    let core_view = |sim: &Sim, life: LifeId| sim.lives[life].node().and_then(|n| n.view()).map_or(0, |v| v.id.0);
    assert_eq!(core_view(&sim, one), 3, "1 installed the view admitting 3");
    assert_eq!(
        view_id(&sim, one),
        2,
        "and holds its view event back: its state stays at the join position"
    );
    assert!(sim.conns_between(one, three).is_empty(), "1 has no connection to 3 yet");
    assert!(!sim.lives[three].app.restored, "3 waits for its state");
    // 3 dials 1 at its next tick; 1 hands it the state then.
    sim.settle_detecting();
    assert!(sim.lives[three].app.restored, "3 restored the state 1 handed over");
    sim.multicast(1);
    sim.multicast(3);
    sim.settle_detecting();
    sim.check(Expect::Settled);
}

/// Issue 26, behaviour 2: a newcomer that coordinates never excludes its own sponsor for a slow
/// snapshot. 1 comes back into {2,3,4} and, the lowest rank, coordinates the next view change; its
/// sponsor 2 hands it the state in many chunks, and 2's promise waits behind them on the same
/// connection. 4 crashes. For many view-change timeouts nothing from 2 reaches 1 (a snapshot on a slow
/// link) while 3's promise is in: 1 must keep waiting for 2, which nobody suspects, rather than
/// propose {1,3} (it would then stop for want of its sponsor, and 2 and 3 lack a quorum without it:
/// one crash would end the group). Once the snapshot is through, the view is {1,2,3}.
#[test]
fn a_newcomer_coordinating_waits_for_its_sponsor_behind_a_slow_snapshot() {
    let mut sim = transferring_state(4, 4);
    for _ in 0..3 {
        for rank in 1..=4 {
            sim.multicast(rank);
        }
    }
    sim.run_until_quiet();
    sim.crash(1);
    sim.suspect_everywhere(1);
    sim.run_until_quiet();
    sim.restart(1);
    let one = sim.current(1);
    let two = sim.current(2);
    for rank in 2..=4 {
        sim.connect(1, rank);
    }
    // The admission runs; what 2 sends 1 from then on (the snapshot first) is held back.
    sim.settle_except(&[(two, one)]);
    assert_eq!(sim.view_of(2), vec![1, 2, 3, 4], "2 installed the view admitting 1");
    assert!(
        sim.net.queued(two, one) > 2,
        "2's snapshot chunks wait on the link to 1"
    );
    sim.crash(4);
    for rank in 1..=3 {
        sim.suspect(rank, 4);
    }
    let timeout_ticks = Knobs::default().view_change_timeout_ticks;
    for _ in 0..6 * timeout_ticks {
        sim.tick_all(1);
        sim.settle_except(&[(two, one)]);
        for rank in [2, 3] {
            assert!(
                sim.view_of(rank).contains(&2),
                "a view without the sponsor 2, which nobody suspects, was installed"
            );
        }
        let proposed = sim.lives[one].node().and_then(|n| n.view()).map_or(0, |v| v.id.0);
        assert!(proposed <= 3, "1 moved on without its sponsor");
    }
    sim.settle_detecting();
    assert_eq!(sim.view_of(1), vec![1, 2, 3]);
    assert!(sim.lives[one].app.restored, "1 restored the state 2 handed over");
    sim.check(Expect::Settled);
}

/// Found by the simulator (rejoin family, seeds 3722 and 7030): two lives that must dial each other find
/// each other's address. 2 and 4 come back at the same time; each found the other's dead address, and
/// view 3 admits both. 2 (the lower rank) is the one to dial 4, at the address its directory lists for
/// 4's new life, which only the members that 4 dialled know. Without the helper (or when 2 registered
/// first), nobody told 2: neither dialled, each suspected the other after a failure timeout. Every
/// member now hands each life its view admits its directory.
#[test]
fn lives_admitted_together_learn_each_others_address() {
    let mut sim = Sim::new(5);
    sim.apply(Action::HelperDown);
    sim.crash(2);
    sim.crash(4);
    sim.suspect_everywhere(2);
    sim.suspect_everywhere(4);
    sim.run_until_quiet();
    sim.restart(2);
    sim.restart(4);
    let (two, four) = (sim.current(2), sim.current(4));
    for joiner in [2, 4] {
        for to in [1, 3, 5] {
            sim.connect(joiner, to);
        }
    }
    sim.run_until_quiet();
    assert_eq!(sim.view_of(1), vec![1, 2, 3, 4, 5], "one view admits both");
    assert!(sim.conns_between(two, four).is_empty(), "neither dialled the other");
    sim.settle_detecting();
    assert_eq!(
        sim.view_of(1),
        vec![1, 2, 3, 4, 5],
        "nobody is suspected for want of a connection"
    );
    let link = only_conn(&sim, two, four);
    assert_member_conn(&sim, link, two, four);
    sim.multicast(2);
    sim.multicast(4);
    sim.settle_detecting();
    sim.check(Expect::Settled);
}

/// Found by the simulator (partition family, seeds 13278, 14924, 17839, 18420, 19248 and 19609): a
/// rule of the simulator's connections, not of the endpoint. 1 and 2 exclude 3 (a false suspicion)
/// while everything on the way to 3 is slow, and close their connections to it after the decision;
/// then cuts break those connections before their ends of file arrive. A real reader of a broken
/// connection gets a reset, or times out, once the path is back; the simulator used to drop the end
/// of file with the rest of what was in flight, so 3 never learnt that it had lost its group and sat
/// in its old view for ever. What a cut keeps of each direction is random, and a decision that got
/// through tells 3 its end as well, so twenty worlds run: the cut leaves 3 neither in some of them.
#[test]
fn a_close_still_on_its_way_when_a_cut_breaks_the_connection_reaches_the_reader() {
    for seed in 0..20 {
        let delays = DelayProfile {
            max_steps: 0,
            slow_percent: 0,
        };
        let mut sim = Sim::with_delays(3, seed, delays);
        let (one, two, three) = (sim.current(1), sim.current(2), sim.current(3));
        sim.suspect(1, 3);
        sim.suspect(2, 3);
        sim.settle_except(&[(one, three), (two, three)]);
        assert_eq!(sim.view_of(1), vec![1, 2]);
        for rank in [1, 2] {
            if !sim.story_mentions(&format!("{rank} closes")) || sim.queued(rank, 3) == 0 {
                sim.fail(&format!(
                    "{rank} closed its connection to 3, whose end of file is still on its way"
                ));
            }
        }
        // Twice: the second cut finds the end of file of the first still on its way (seed 13278).
        for _ in 0..2 {
            sim.partition(&[1, 2], &[3], CutMode::Drop);
            sim.heal();
        }
        sim.settle_detecting();
        assert!(!sim.lives[three].is_member(), "3 learnt that it lost its group");
        sim.check(Expect::Settled);
    }
}
