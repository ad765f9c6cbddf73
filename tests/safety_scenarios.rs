//! Named stories for the safety slips an adversarial review of the protocol found: schedules the seed
//! sweeps did not generate until the simulator learnt to (a rank restarted at any moment, two processes
//! for one rank, one link cut alone, big payloads under a frame limit, late detector reports).
//!
//! Each test scripts its schedule step by step on the same [`Sim`] as the sweeps, says which rule it
//! pins, and ends with the history checker. `docs/PROTOCOL.md` gives the rules and their arguments.

mod sim;

use sim::check::Expect;
use sim::net::{CutMode, LifeId};
use sim::{Action, Loss, Sim};
use tom::protocol::Phase;
use tom::types::Rank;

/// Lets everything move but the link `held` and the links in `also_held`; on `held`, delivers frames one
/// at a time (letting the rest move after each) until the next one is a frame of `kind`, which stays.
fn deliver_up_to(sim: &mut Sim, held: (LifeId, LifeId), kind: &str, also_held: &[(LifeId, LifeId)]) {
    let mut holding = vec![held];
    holding.extend_from_slice(also_held);
    sim.settle_except(&holding);
    loop {
        let next = sim.peek(held.0, held.1).map(|f| f.describe()).unwrap_or_default();
        if next.is_empty() || next.starts_with(kind) {
            return;
        }
        sim.deliver_between(held.0, held.1);
        sim.settle_except(&holding);
    }
}

/// Behaviour 1: two processes never become the same life. View {1,2}; a new process P of rank 3 is
/// admitted as 3#3, but the decision reaches member 2 late; P multicasts and dies before anyone
/// suspects it. A second new process Q of rank 3 dials member 2, which installs the admitting view late.
/// Q must never take a decision that admits another process: otherwise members 1 and 2 hold different
/// messages as (3, seq 1) and deliver different messages at one position. (2's endpoint keeps what it
/// relays to rank 3 for P's life, which has no connection there, rather than putting it on Q's joiner
/// connection; the core refuses such a decision too.)
#[test]
fn two_processes_for_one_rank_never_share_a_life() {
    let mut sim = Sim::new(3);
    sim.crash(3);
    sim.suspect(1, 3);
    sim.suspect(2, 3);
    sim.run_until_quiet();
    assert_eq!(sim.view_of(1), vec![1, 2]);
    let (one, two) = (sim.current(1), sim.current(2));
    sim.restart(3);
    let p = sim.current(3);
    sim.connect(3, 1);
    sim.connect(3, 2);
    // The admission runs, with everything from 1 to 2 and from P to 2 held back but for the ballot.
    let held = [(one, two), (p, two)];
    sim.settle_except(&held);
    sim.deliver_through(one, two, "prepare");
    sim.settle_except(&held);
    sim.deliver_through(one, two, "accept");
    sim.settle_except(&held);
    assert_eq!(
        sim.lives[p].phase(),
        Some(Phase::Member),
        "P installed the view admitting it"
    );
    assert_eq!(sim.lives[two].node().unwrap().view().unwrap().id.0, 2, "2 has not");
    sim.apply(Action::Multicast { node: p });
    sim.apply(Action::Flush { node: p });
    while sim.net.queued(p, one) > 0 {
        sim.deliver_between(p, one);
    }
    // P's power is cut: what it sent to 2 is lost, and nobody suspects it yet.
    sim.apply(Action::PowerCut { node: p });
    sim.restart(3);
    let q = sim.current(3);
    sim.apply(Action::Connect { joiner: q, to: two });
    sim.settle_except(&[(one, two)]);
    // Member 2 installs the admitting view late; nothing it sends for P's life reaches Q.
    while sim.net.queued(one, two) > 0 {
        sim.deliver_between(one, two);
    }
    sim.settle_except(&[]);
    assert_eq!(
        sim.lives[q].phase(),
        Some(Phase::Joining),
        "Q ignores a decision that admits another process"
    );
    sim.apply(Action::Multicast { node: q });
    sim.apply(Action::Flush { node: q });
    sim.settle_except(&[]);
    sim.check(Expect::Safety);
    // The group then suspects the dead P and admits Q as a life of its own.
    for at in [one, two] {
        sim.apply(Action::Suspect { at, of: p });
    }
    sim.settle_detecting();
    assert_eq!(sim.lives[q].phase(), Some(Phase::Member));
    let q_life = sim.lives[q].node().unwrap().me();
    assert!(q_life.incarnation.0 > 3, "Q is a new life, {q_life}, not P's 3#3");
    sim.check(Expect::Settled);
}

/// Behaviour 2: a big view change stays under the frame limit. Three members multicast big payloads;
/// member 2 is paused (its acknowledgements stop, the others' messages pile up undelivered), and its
/// own last messages reach member 1 only before it crashes. The cut, and the part of it member 3 lacks,
/// are each larger than the frame limit: the consensus messages name messages only, the payloads travel
/// in bounded chunks, and the survivors install the next view and deliver everything.
#[test]
fn a_view_change_far_larger_than_the_frame_limit_goes_through() {
    let frame_limit = 64 * 1024;
    let mut sim = Sim::with_chunks(
        3,
        7,
        sim::net::DelayProfile {
            max_steps: 0,
            slow_percent: 0,
        },
        CHUNK_BYTES,
    );
    sim.frame_limit_bytes = Some(frame_limit);
    sim.payload_pad_max = 8 * 1024;
    let (one, two, three) = (sim.current(1), sim.current(2), sim.current(3));
    let paused: Vec<(LifeId, LifeId)> = vec![(two, one), (two, three)];
    for _ in 0..20 {
        sim.multicast(1);
        sim.multicast(3);
        sim.settle_except(&paused);
    }
    sim.net.heal();
    // 2's queued frames and 30 more big messages reach 1, none reaches 3; then 2 crashes.
    for _ in 0..30 {
        sim.multicast(2);
    }
    while sim.net.queued(two, one) > 0 {
        sim.deliver_between(two, one);
    }
    sim.apply(Action::Crash {
        node: two,
        loss: Loss::All,
    });
    // What 3 must be given is 2's 30 messages: far more than one frame may carry.
    let lacking_bytes: usize = sim.lives[two].history.multicasts.iter().map(String::len).sum();
    assert!(lacking_bytes > frame_limit, "3 lacks {lacking_bytes} bytes of payloads");
    sim.suspect(1, 2);
    sim.suspect(3, 2);
    sim.settle_detecting();
    assert_eq!(sim.view_of(1), vec![1, 3]);
    assert_eq!(sim.delivered(1).len(), 70);
    assert_eq!(sim.delivered(1), sim.delivered(3));
    sim.check(Expect::Settled);
}

/// The chunk size of [`a_view_change_far_larger_than_the_frame_limit_goes_through`].
const CHUNK_BYTES: usize = 16 * 1024;

/// Behaviour 3: one broken link excludes one of its ends, not both. In {1,2,3} only the link 2–3 is
/// cut; each end suspects the other. A suspicion counts only if its accuser is not itself suspected
/// (reports carry first-hand suspicions only), so the next view keeps 1 and one of 2 and 3.
#[test]
fn one_cut_link_excludes_one_end_only() {
    for order in [[2u16, 3], [3, 2]] {
        let mut sim = Sim::new(3);
        sim.multicast(1);
        sim.run_until_quiet();
        sim.partition(&[2], &[3], CutMode::Drop);
        let [a, b] = order;
        sim.suspect(a, b);
        sim.suspect(b, a);
        sim.settle_detecting();
        let view = sim.view_of(1);
        assert_eq!(view.len(), 2, "one end only is excluded: view {view:?}");
        assert!(view.contains(&1));
        sim.check(Expect::Settled);
    }
}

/// Behaviour 4: a leave never decides an empty view, and excludes nobody nobody suspects. In {1,2}, 1
/// leaves while 2 is slow past a view-change timeout: 1 is a quorum alone, but a change wanted only for
/// a leave waits for every member that nobody suspects.
#[test]
fn a_leave_waits_for_a_slow_member_instead_of_excluding_it() {
    let mut sim = Sim::new(2);
    sim.multicast(1);
    sim.multicast(2);
    sim.run_until_quiet();
    let (one, two) = (sim.current(1), sim.current(2));
    sim.leave(1);
    // 2 is slow: nothing reaches it for many view-change timeouts.
    sim.settle_except(&[(one, two)]);
    for _ in 0..100 {
        sim.apply(Action::Tick { node: one });
        sim.settle_except(&[(one, two)]);
    }
    assert_ne!(
        sim.lives[one].phase(),
        Some(Phase::Left),
        "no view without 2 decided alone"
    );
    sim.settle_detecting();
    assert_eq!(sim.lives[one].phase(), None, "1 left, and its process exited");
    assert_eq!(sim.lives[one].history.end, sim::check::End::Left);
    assert_eq!(sim.view_of(2), vec![2]);
    assert_eq!(sim.lives[two].phase(), Some(Phase::Member), "the slow member stays");
    sim.check(Expect::Settled);
}

/// Behaviour 6: a suspicion names a life. A detector's report about rank 3's old life, arriving after
/// the group admitted a new life of rank 3, does not count against the new one.
#[test]
fn a_late_report_about_an_old_life_spares_the_new_one() {
    let mut sim = Sim::new(3);
    let old_3 = sim.current(3);
    sim.crash(3);
    sim.suspect(1, 3);
    sim.suspect(2, 3);
    sim.run_until_quiet();
    sim.restart(3);
    sim.connect(3, 1);
    sim.connect(3, 2);
    sim.run_until_quiet();
    assert_eq!(sim.phase(3), Some(Phase::Member));
    let views_before = sim.lives[sim.current(1)].history.views.len();
    // The stale report: 1's detector still had the old connection's silence to tell.
    let one = sim.current(1);
    sim.apply(Action::Suspect { at: one, of: old_3 });
    sim.run_until_quiet();
    assert!(
        sim.node(1).status().suspects.is_empty(),
        "the new life of rank 3 is not suspected"
    );
    assert_eq!(sim.lives[one].history.views.len(), views_before, "no view change");
    sim.multicast(3);
    sim.run_until_quiet();
    sim.check(Expect::Settled);
}

/// A member of the next view that never got the deciding ballot's `Accept` (its proposer died after a
/// quorum accepted) learns the decision from a relay, lacks payloads of the cut, fetches them from the
/// relaying member, keeps the new view's frames that arrive meanwhile, and then installs.
#[test]
fn a_member_without_the_cut_fetches_it_before_installing() {
    let mut sim = Sim::new(4);
    let (one, two, three, four) = (sim.current(1), sim.current(2), sim.current(3), sim.current(4));
    // 4 multicasts; only 1 and 2 get the message before 4 dies.
    sim.apply(Action::Multicast { node: four });
    sim.apply(Action::Flush { node: four });
    sim.deliver_between(four, one);
    sim.deliver_between(four, two);
    sim.apply(Action::Crash {
        node: four,
        loss: Loss::All,
    });
    for rank in [1, 2, 3] {
        sim.suspect(rank, 4);
    }
    // The ballot runs, but 1's Accept (with the payload 3 lacks) never reaches 3, and 1 dies right
    // after 2 accepted: a quorum of {1,2,3,4} is 1 and 2 (half, with the lowest rank).
    let held = [(one, three)];
    sim.settle_except(&[(one, three), (one, two)]);
    sim.deliver_through(one, three, "prepare");
    sim.settle_except(&[(one, three), (one, two)]);
    sim.deliver_through(one, two, "prepare");
    sim.settle_except(&[(one, three), (one, two)]);
    sim.deliver_through(one, two, "accept");
    sim.settle_except(&held);
    assert_eq!(sim.lives[one].node().unwrap().view().unwrap().id.0, 2, "decided");
    // 1's machine loses power: its connections go silent, nobody notices yet.
    sim.apply(Action::PowerCut { node: one });
    // 2 installed and relayed the decision to 3, which fetches the payload from 2.
    sim.settle_except(&[]);
    assert_eq!(sim.lives[three].node().unwrap().view().unwrap().id.0, 2);
    assert_eq!(sim.delivered(3), sim.delivered(2));
    assert_eq!(sim.delivered(3).len(), 1, "4's message, carried");
    for at in [two, three] {
        sim.apply(Action::Suspect { at, of: one });
    }
    sim.settle_detecting();
    assert_eq!(sim.view_of(2), vec![2, 3]);
    sim.multicast(2);
    sim.settle_detecting();
    sim.check(Expect::Settled);
}

/// Found by the soak (crash family, seed 13069): a proposer gathers part of a cut, its ballot dies, and
/// its report for the next ballot must not name the gathered payloads past a gap. Origin 6's two
/// messages reach 2 (the first) and 3 (both) only; 6 crashes; proposer 1 fetches the first from 2 and
/// the second from 3; 2 dies before answering, 3 answers and dies. In the next ballot, 1, 4 and 5 hold
/// nothing of 6 but the second message: carrying it would deliver it without the first.
#[test]
fn a_cut_gathered_by_a_ballot_that_died_has_no_gap() {
    let mut sim = Sim::new(6);
    let l: Vec<LifeId> = (1..=6).map(|r| sim.current(r)).collect();
    let six = l[5];
    sim.apply(Action::Multicast { node: six });
    sim.apply(Action::Flush { node: six });
    sim.apply(Action::Multicast { node: six });
    sim.apply(Action::Flush { node: six });
    sim.deliver_between(six, l[1]);
    sim.deliver_between(six, l[2]);
    sim.deliver_between(six, l[2]);
    sim.apply(Action::Crash {
        node: six,
        loss: Loss::All,
    });
    for rank in 1..=5 {
        sim.suspect(rank, 6);
    }
    let (one, two, three) = (l[0], l[1], l[2]);
    deliver_up_to(&mut sim, (two, one), "carry", &[(three, one)]);
    sim.apply(Action::Crash {
        node: two,
        loss: Loss::All,
    });
    // 3's promise reaches 1, which asks 2 (now dead) for the first message and 3 for the second; 3
    // answers, and 1 holds the second message without the first. Then 3 dies too.
    sim.settle_except(&[]);
    let gathered_second_only = sim.node(1).status().held == 0;
    assert!(gathered_second_only, "1 holds back nothing of 6 in its queue");
    sim.apply(Action::Crash {
        node: three,
        loss: Loss::All,
    });
    for at in [one, l[3], l[4]] {
        for of in [two, three] {
            sim.apply(Action::Suspect { at, of });
        }
    }
    sim.settle_detecting();
    assert_eq!(sim.view_of(1), vec![1, 4, 5]);
    sim.check(Expect::Settled);
}

/// Found by the soak (rejoin family, seed 8844): a proposer asked a member for a payload it lacked, and
/// that member died before it answered. The proposer asks the next member that reported it a
/// view-change timeout later, within the same ballot, instead of waiting until its ballot times out
/// (by when the members waiting on it may have taken it for a silent proposer).
#[test]
fn a_gathering_proposer_asks_another_holder_when_the_first_dies() {
    let mut sim = Sim::new(5);
    let l: Vec<LifeId> = (1..=5).map(|r| sim.current(r)).collect();
    let (one, two, five) = (l[0], l[1], l[4]);
    sim.apply(Action::Multicast { node: five });
    sim.apply(Action::Flush { node: five });
    sim.deliver_between(five, two);
    sim.deliver_between(five, l[2]);
    sim.apply(Action::Crash {
        node: five,
        loss: Loss::All,
    });
    for rank in 1..=4 {
        sim.suspect(rank, 5);
    }
    // Everything moves but 2's frames to 1, which stop right before 2's answer to the fetch.
    deliver_up_to(&mut sim, (two, one), "carry", &[]);
    assert!(sim.net.queued(two, one) > 0, "2 answered the fetch");
    // 2's machine loses power (its connections go silent): nobody's detector has noticed it yet; time
    // passes.
    sim.apply(Action::PowerCut { node: two });
    let timeout = tom::protocol::CoreConfig::new(Rank(1)).view_change_timeout_ticks;
    for _ in 0..timeout + 2 {
        sim.tick_all(1);
        sim.settle_except(&[]);
    }
    assert_eq!(
        sim.view_of(1),
        vec![1, 2, 3, 4],
        "the first ballot decided, with 2's promise in it"
    );
    assert_eq!(sim.delivered(1).len(), 1, "5's message, fetched from 3");
    for rank in [1, 3, 4] {
        sim.suspect(rank, 2);
    }
    sim.settle_detecting();
    assert_eq!(sim.view_of(1), vec![1, 3, 4]);
    sim.check(Expect::Settled);
}

/// Found by the chaos check of real processes: the rule that no fresh proposal is empty must not keep a
/// dissolving group from ending. A lone member that leaves, and a group whose every member leaves at
/// once, end with every member `Left` (the empty view), not in view changes for ever.
#[test]
fn a_group_whose_every_member_leaves_dissolves() {
    for size in [1u16, 3] {
        let mut sim = Sim::new(size);
        for rank in 1..=size {
            sim.multicast(rank);
        }
        sim.run_until_quiet();
        for rank in 1..=size {
            sim.leave(rank);
        }
        sim.settle_detecting();
        for rank in 1..=size {
            let life = sim.current(rank);
            assert_eq!(
                sim.lives[life].history.end,
                sim::check::End::Left,
                "rank {rank} of {size} left"
            );
            assert_eq!(
                sim.delivered(rank).len(),
                size as usize,
                "every message delivered first"
            );
        }
        sim.check(Expect::Settled);
    }
}

/// Found by the soak (rejoin family, seed 39124): the only promiser that held some payloads dies after
/// promising. The value can never be gathered; the proposer starts over at its next attempt to ask
/// (one view-change timeout), instead of waiting out its ballot (two timeouts) while the members
/// waiting on it count towards taking it for a silent proposer.
#[test]
fn a_ballot_whose_payloads_died_with_their_only_holder_starts_over() {
    let mut sim = Sim::new(4);
    let l: Vec<LifeId> = (1..=4).map(|r| sim.current(r)).collect();
    let (one, three, four) = (l[0], l[2], l[3]);
    // 4's message reaches 3 only; 4 dies.
    sim.apply(Action::Multicast { node: four });
    sim.apply(Action::Flush { node: four });
    sim.deliver_between(four, three);
    sim.apply(Action::Crash {
        node: four,
        loss: Loss::All,
    });
    for rank in 1..=3 {
        sim.suspect(rank, 4);
    }
    // 1 runs the ballot; 3's answer to 1's fetch is lost with 3, which dies right after promising.
    deliver_up_to(&mut sim, (three, one), "carry", &[]);
    sim.apply(Action::Crash {
        node: three,
        loss: Loss::All,
    });
    for rank in [1, 2] {
        sim.suspect(rank, 3);
    }
    sim.settle_except(&[]);
    assert_eq!(sim.view_of(1), vec![1, 2, 3, 4], "still in view 1");
    let timeout = tom::protocol::CoreConfig::new(Rank(1)).view_change_timeout_ticks;
    for _ in 0..timeout * 3 / 2 {
        sim.tick_all(1);
        sim.settle_except(&[]);
    }
    assert_eq!(
        sim.view_of(1),
        vec![1, 2],
        "the next ballot decided within one and a half timeouts"
    );
    assert!(
        sim.delivered(1).is_empty(),
        "4's message, held only by 3, is delivered by nobody"
    );
    sim.check(Expect::Settled);
}
